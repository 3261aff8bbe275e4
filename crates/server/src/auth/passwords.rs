//! Passwords: Argon2id hashing off the async threads, and the rules a new
//! password must meet.

use std::sync::Arc;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use echo_proto::Secret;

use super::{
    argon::{self, Memory},
    workers::Workers,
};

/// Longest password, in bytes; longer ones are refused before hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Shortest password allowed, whatever the configuration says.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Characters of a new password the strength estimate looks at. zxcvbn's
/// cost grows steeply with length (a 100-character password of look-alike
/// symbols takes 0.6 s of CPU, 64 take 0.24 s); a password whose first 64
/// characters are hard to guess is hard to guess.
const STRENGTH_CHARS: usize = 64;

/// Password work (Argon2id hashing and verifying, the strength estimate of
/// a new password) on its own idle-priority threads (`password_workers`, by
/// default one per core), a job per thread at a time, so logins never stall
/// the threads that serve echo traffic.
#[derive(Debug, Clone)]
pub struct Passwords {
    workers: Arc<Workers>,
    /// Verified against when the user does not exist, so an unknown user
    /// costs the same time as a wrong password.
    dummy_hash: Arc<str>,
}

/// Why a password could not be hashed or checked (a bug or an exhausted
/// machine, never the user's fault).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

impl HashError {
    /// A hashing task that panicked or was cancelled.
    pub fn from_join(err: &tokio::task::JoinError) -> Self {
        Self(err.to_string())
    }
}

impl Passwords {
    /// Sets up password work with [`Passwords::default_workers`] jobs at once.
    pub fn new() -> Result<Self, HashError> {
        Self::with_workers(Self::default_workers())
    }

    /// Jobs at once by default: one per core. (Half the cores was measured
    /// and is worse for the clients already served: see docs/BENCHMARKS.md.)
    pub fn default_workers() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// Sets up password work with at most `workers` jobs at once.
    pub fn with_workers(workers: usize) -> Result<Self, HashError> {
        let mut dummy = [0u8; 32];
        OsRng.fill_bytes(&mut dummy);
        // Made once, off the password threads: its memory is not kept.
        let dummy_hash = argon::hash(hex::encode(dummy).as_bytes(), Memory::Once)
            .map_err(|e| HashError(e.to_string()))?;
        let threads = Workers::start(workers)
            .map_err(|err| HashError(format!("cannot start the password threads: {err}")))?;
        Ok(Self {
            workers: Arc::new(threads),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// [`Passwords::with_workers`] on the blocking pool (it hashes once).
    pub async fn start(workers: usize) -> Result<Self, HashError> {
        tokio::task::spawn_blocking(move || Self::with_workers(workers))
            .await
            .map_err(|err| HashError::from_join(&err))?
    }

    /// Hashes `password` into an Argon2id PHC string with a fresh salt.
    pub async fn hash(&self, password: Secret) -> Result<String, HashError> {
        self.run(move || hash_blocking(password.expose())).await?
    }

    /// Checks a new password against the rules ([`check_password`]), off
    /// the async threads. The outer error is a failure of the machinery;
    /// the inner one says what is wrong with the password.
    pub async fn check_new(
        &self,
        user: &str,
        password: &Secret,
        min_chars: usize,
    ) -> Result<Result<(), String>, HashError> {
        let user = user.to_owned();
        let password = password.clone();
        self.run(move || check_password(&user, password.expose(), min_chars))
            .await
    }

    /// Runs `job` on a password thread once one is free.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        self.workers
            .run(job)
            .await
            .map_err(|_| HashError("a password job failed".into()))
    }

    /// Whether `password` matches `hash`; with no hash (unknown user) it
    /// checks against a dummy hash and returns false, taking the same time.
    pub async fn verify(&self, password: Secret, hash: Option<String>) -> Result<bool, HashError> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = self
            .run(move || verify_blocking(password.expose(), &hash))
            .await??;
        Ok(known && matches)
    }
}

/// Hashes on a password thread, into its kept memory ([`argon`]).
fn hash_blocking(password: &str) -> Result<String, HashError> {
    argon::hash(password.as_bytes(), Memory::Kept).map_err(|e| HashError(e.to_string()))
}

/// Verifies on a password thread, in its kept memory ([`argon`]).
fn verify_blocking(password: &str, hash: &str) -> Result<bool, HashError> {
    argon::verify(password.as_bytes(), hash, Memory::Kept).map_err(|e| HashError(e.to_string()))
}

/// Checks a new password: long enough, not too long, not easily guessed
/// (zxcvbn score 2 or more on its first 64 characters, with the user name
/// counted as a known word). CPU-heavy: servers call it through
/// [`Passwords::check_new`].
pub fn check_password(user: &str, password: &str, min_chars: usize) -> Result<(), String> {
    let min_chars = min_chars.max(MIN_PASSWORD_CHARS);
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    if password.chars().count() < min_chars {
        return Err(format!(
            "the password is shorter than {min_chars} characters"
        ));
    }
    let judged = match password.char_indices().nth(STRENGTH_CHARS) {
        Some((end, _)) => &password[..end],
        None => password,
    };
    let estimate = zxcvbn::zxcvbn(judged, &[user]);
    if estimate.score() < zxcvbn::Score::Two {
        let why = estimate
            .feedback()
            .and_then(|feedback| feedback.warning())
            .map_or_else(|| "it is too easy to guess".to_owned(), |w| w.to_string());
        return Err(format!("the password is too weak: {why}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        assert!(
            check_password("ann", "short", 8)
                .unwrap_err()
                .contains("shorter than 8")
        );
        assert!(
            check_password("ann", "password", 8)
                .unwrap_err()
                .contains("too weak")
        );
        assert!(check_password("ann", "12345678", 8).is_err());
        assert!(check_password("ann", "ann12345", 8).is_err());
        assert!(
            check_password("ann", &"x".repeat(1025), 8)
                .unwrap_err()
                .contains("longer")
        );
        assert!(check_password("ann", "correct horse battery", 8).is_ok());
        assert!(check_password("ann", "correct horse battery", 30).is_err());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_unique_salts() {
        let passwords = Passwords::new().unwrap();
        let a = passwords
            .hash(Secret::new("correct horse battery"))
            .await
            .unwrap();
        let b = passwords
            .hash(Secret::new("correct horse battery"))
            .await
            .unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each password gets its own salt");
        let salt = argon2::PasswordHash::new(&a).unwrap().salt.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(salt.decode_b64(&mut buf).unwrap().len(), 16);
        assert!(
            passwords
                .verify(Secret::new("correct horse battery"), Some(a.clone()))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify(Secret::new("wrong horse battery"), Some(a))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify(Secret::new("anything at all"), None)
                .await
                .unwrap()
        );
    }
}
