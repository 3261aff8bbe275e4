//! Passwords, names, session tokens and attempt limits: the rules of lab
//! task 6, kept apart from the connection state machine that applies them.

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version,
    password_hash::{
        SaltString,
        rand_core::{OsRng, RngCore},
    },
};
use echo_proto::Secret;
use tokio::sync::Semaphore;

use crate::store::UnixTime;

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest password, in bytes; longer ones are refused before hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Shortest password allowed, whatever the configuration says.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Failed attempts one connection may make before `bye`.
pub const ATTEMPTS_PER_CONNECTION: u32 = 5;
/// Consecutive failures on an account before back-off starts.
const FREE_FAILURES: u32 = 5;
/// Longest back-off, in seconds.
const MAX_BACKOFF_SECS: u64 = 15 * 60;
/// Failures an account may collect in a day.
const MAX_FAILURES_PER_DAY: u32 = 100;

/// Where "now" comes from; tests use a clock they can move.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Seconds since the Unix epoch.
    fn now(&self) -> UnixTime;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

/// Argon2id hashing on the blocking pool, at most one hash per core at a
/// time, so logins never stall the threads that serve echo traffic.
#[derive(Debug, Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// Verified against when the user does not exist, so an unknown user
    /// costs the same time as a wrong password.
    dummy_hash: Arc<str>,
}

/// Why a password could not be hashed or checked (a bug or an exhausted
/// machine, never the user's fault).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Attempt limits per account and per address, in bounded memory.
#[derive(Debug)]
pub struct AttemptLimits {
    accounts: Mutex<BoundedMap<String, AccountAttempts>>,
    addresses: Mutex<BoundedMap<IpAddr, Bucket>>,
    per_minute: u32,
}

/// A refusal: try again after `retry_after` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Seconds to wait.
    pub retry_after: u64,
}

#[derive(Debug, Clone, Default)]
struct AccountAttempts {
    consecutive: u32,
    blocked_until: UnixTime,
    day: u64,
    today: u32,
}

/// A token bucket: `tokens` refill at `per_minute` a minute up to the cap.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    updated: UnixTime,
}

/// A map that never holds more than `cap` entries: when full, the entry
/// touched longest ago is dropped. Keys come from the network (user names,
/// addresses), so without a cap a flood of distinct ones would grow it
/// without end.
#[derive(Debug)]
struct BoundedMap<K, V> {
    entries: HashMap<K, (V, UnixTime)>,
    cap: usize,
}

impl HashError {
    /// A hashing task that panicked or was cancelled.
    pub fn from_join(err: &tokio::task::JoinError) -> Self {
        Self(err.to_string())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

impl Passwords {
    /// Sets up hashing with one permit per core.
    pub fn new() -> Result<Self, HashError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut dummy = [0u8; 32];
        OsRng.fill_bytes(&mut dummy);
        let dummy_hash = hash_blocking(&new_token_from(&dummy))?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(cores)),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// Hashes `password` into an Argon2id PHC string with a fresh salt.
    pub async fn hash(&self, password: Secret) -> Result<String, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError(e.to_string()))?;
        tokio::task::spawn_blocking(move || hash_blocking(password.expose()))
            .await
            .map_err(|e| HashError(e.to_string()))?
    }

    /// Whether `password` matches `hash`; with no hash (unknown user) it
    /// checks against a dummy hash and returns false, taking the same time.
    pub async fn verify(&self, password: Secret, hash: Option<String>) -> Result<bool, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError(e.to_string()))?;
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches =
            tokio::task::spawn_blocking(move || verify_blocking(password.expose(), &hash))
                .await
                .map_err(|e| HashError(e.to_string()))??;
        Ok(known && matches)
    }
}

/// The OWASP parameters: Argon2id, 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    // Constant, valid parameters: `Params::new` cannot fail on them.
    #[allow(clippy::unwrap_used)]
    let params = Params::new(19_456, 2, 1, None).unwrap();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| HashError(e.to_string()))
}

fn verify_blocking(password: &str, hash: &str) -> Result<bool, HashError> {
    let parsed = PasswordHash::new(hash).map_err(|e| HashError(e.to_string()))?;
    Ok(argon2()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// A fresh session token: 256 bits from the OS generator, as 64 hex digits.
pub fn new_token() -> Secret {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    Secret::new(new_token_from(&bytes))
}

fn new_token_from(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a name (an identification name or a user name): trimmed, 1 to 64
/// characters, none of them a control character. Returns the trimmed name
/// or a sentence saying what is wrong.
pub fn validate_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "the name is longer than {MAX_NAME_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("the name has control characters".into());
    }
    Ok(name.to_owned())
}

/// Checks a new password: long enough, not too long, not easily guessed
/// (zxcvbn score 2 or more, with the user name counted as a known word).
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
    let estimate = zxcvbn::zxcvbn(password, &[user]);
    if estimate.score() < zxcvbn::Score::Two {
        let why = estimate
            .feedback()
            .and_then(|feedback| feedback.warning())
            .map_or_else(|| "it is too easy to guess".to_owned(), |w| w.to_string());
        return Err(format!("the password is too weak: {why}"));
    }
    Ok(())
}

impl AttemptLimits {
    /// Limits with room for `cap` accounts and `cap` addresses, allowing
    /// `per_minute` password attempts a minute from one address.
    pub fn new(cap: usize, per_minute: u32) -> Self {
        Self {
            accounts: Mutex::new(BoundedMap::new(cap)),
            addresses: Mutex::new(BoundedMap::new(cap)),
            per_minute,
        }
    }

    /// Takes one attempt from `ip`'s allowance.
    pub fn check_address(&self, ip: IpAddr, now: UnixTime) -> Result<(), Limited> {
        let per_minute = f64::from(self.per_minute.max(1));
        let mut addresses = lock(&self.addresses);
        let bucket = addresses.entry(ip, now, || Bucket {
            tokens: per_minute,
            updated: now,
        });
        let elapsed = now.saturating_sub(bucket.updated) as f64;
        bucket.tokens = (bucket.tokens + elapsed * per_minute / 60.0).min(per_minute);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - bucket.tokens) * 60.0 / per_minute).ceil() as u64;
            Err(Limited {
                retry_after: wait.max(1),
            })
        }
    }

    /// Whether `user` may try a password now.
    pub fn check_account(&self, user: &str, now: UnixTime) -> Result<(), Limited> {
        let accounts = lock(&self.accounts);
        let Some(account) = accounts.get(user) else {
            return Ok(());
        };
        if account.day == now / 86_400 && account.today >= MAX_FAILURES_PER_DAY {
            return Err(Limited {
                retry_after: 86_400 - now % 86_400,
            });
        }
        if account.blocked_until > now {
            return Err(Limited {
                retry_after: account.blocked_until - now,
            });
        }
        Ok(())
    }

    /// Counts a failed password for `user`; from the sixth in a row each
    /// one blocks the account for twice as long as the one before.
    pub fn record_failure(&self, user: &str, now: UnixTime) {
        let mut accounts = lock(&self.accounts);
        let account = accounts.entry(user.to_owned(), now, AccountAttempts::default);
        let day = now / 86_400;
        if account.day != day {
            account.day = day;
            account.today = 0;
        }
        account.today += 1;
        account.consecutive += 1;
        if account.consecutive >= FREE_FAILURES {
            let doublings = (account.consecutive - FREE_FAILURES).min(20);
            let backoff = (1u64 << doublings).min(MAX_BACKOFF_SECS);
            account.blocked_until = now + backoff;
        }
    }

    /// A correct password: the account's run of failures is over.
    pub fn record_success(&self, user: &str) {
        let mut accounts = lock(&self.accounts);
        if let Some(account) = accounts.get_mut(user) {
            account.consecutive = 0;
            account.blocked_until = 0;
        }
    }

    /// How many accounts and addresses are tracked (for tests and stats).
    pub fn tracked(&self) -> (usize, usize) {
        (lock(&self.accounts).len(), lock(&self.addresses).len())
    }
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    fn new(cap: usize) -> Self {
        Self {
            entries: HashMap::new(),
            cap: cap.max(1),
        }
    }

    fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key).map(|(value, _)| value)
    }

    fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get_mut(key).map(|(value, _)| value)
    }

    /// The entry for `key`, created with `make` (dropping the stalest entry
    /// first if the map is full), marked as touched at `now`.
    fn entry(&mut self, key: K, now: UnixTime, make: impl FnOnce() -> V) -> &mut V {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.cap {
            // O(n), but only when full; the cap keeps n small.
            if let Some(stalest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, touched))| *touched)
                .map(|(k, _)| k.clone())
            {
                self.entries.remove(&stalest);
            }
        }
        let slot = self.entries.entry(key).or_insert_with(|| (make(), now));
        slot.1 = now;
        &mut slot.0
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(validate_name("  Ann  "), Ok("Ann".to_owned()));
        assert!(validate_name("   ").is_err());
        assert!(validate_name(&"x".repeat(65)).is_err());
        assert!(validate_name(&"я".repeat(64)).is_ok());
        assert!(validate_name("a\u{7}b").is_err());
    }

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
        let salt = PasswordHash::new(&a).unwrap().salt.unwrap();
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

    #[test]
    fn tokens_are_256_random_bits() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn accounts_back_off_after_five_failures_in_a_row() {
        let limits = AttemptLimits::new(100, 1000);
        for _ in 0..4 {
            limits.record_failure("ann", 1000);
            assert!(limits.check_account("ann", 1000).is_ok());
        }
        limits.record_failure("ann", 1000);
        assert_eq!(
            limits.check_account("ann", 1000),
            Err(Limited { retry_after: 1 })
        );
        assert!(limits.check_account("ann", 1001).is_ok());
        limits.record_failure("ann", 1001);
        assert_eq!(
            limits.check_account("ann", 1001),
            Err(Limited { retry_after: 2 })
        );
        limits.record_success("ann");
        assert!(limits.check_account("ann", 1001).is_ok());
    }

    #[test]
    fn an_account_gets_at_most_100_failures_a_day() {
        let limits = AttemptLimits::new(100, 1000);
        let day = 86_400 * 20_000;
        for i in 0..100 {
            limits.record_failure("ann", day + i);
            limits.record_success("ann");
        }
        assert!(limits.check_account("ann", day + 200).is_err());
        assert!(limits.check_account("ann", day + 86_400).is_ok());
    }

    #[test]
    fn an_address_gets_its_allowance_per_minute() {
        let limits = AttemptLimits::new(100, 10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..10 {
            assert!(limits.check_address(ip, 5000).is_ok());
        }
        assert_eq!(
            limits.check_address(ip, 5000),
            Err(Limited { retry_after: 6 })
        );
        assert!(limits.check_address(ip, 5006).is_ok());
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limits.check_address(other, 5000).is_ok());
    }

    #[test]
    fn tracking_memory_is_bounded_under_a_flood_of_names_and_addresses() {
        let limits = AttemptLimits::new(1000, 10);
        for i in 0..20_000u32 {
            limits.record_failure(&format!("user{i}"), u64::from(i));
            let ip = IpAddr::from(i.to_be_bytes());
            let _ = limits.check_address(ip, u64::from(i));
        }
        assert_eq!(limits.tracked(), (1000, 1000));
    }
}
