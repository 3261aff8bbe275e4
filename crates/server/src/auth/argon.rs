//! Argon2id into working memory that is kept. One hash with the OWASP
//! parameters fills 19 MiB; made afresh for every hash, that memory stayed
//! with the allocator after it was freed (measured: 12 logins on 2 password
//! threads took the server's RSS from 21 to 168 MB). Each password thread
//! now makes its 19 MiB once, on its first hash, and hashes into it every
//! time after (`Argon2::hash_password_into_with_memory`), so password work
//! holds `password_workers` x 19 MiB at most, however many logins come.
//!
//! The PHC strings are the ones `PasswordHasher::hash_password` makes for
//! the same salt, and verification follows `PasswordVerifier`: the stored
//! string's algorithm, version, parameters and output length, compared in
//! constant time.

use std::cell::RefCell;

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{Error, Output, ParamsString, SaltString, rand_core::OsRng},
};

thread_local! {
    /// This thread's working memory: empty until its first hash, then the
    /// OWASP parameters' 19,456 blocks of 1 KiB, kept for the thread's life.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// The OWASP parameters: Argon2id, 19 MiB, 2 passes, 1 lane.
pub(super) fn argon2() -> Argon2<'static> {
    // Constant, valid parameters: `Params::new` cannot fail on them.
    #[allow(clippy::unwrap_used)]
    let params = Params::new(19_456, 2, 1, None).unwrap();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Where a hash gets its working memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Memory {
    /// The calling thread's kept memory (the password threads).
    Kept,
    /// Memory for this hash only (a hash made once, off those threads).
    Once,
}

impl Memory {
    /// Runs `job` with `blocks` blocks of working memory. More than the
    /// kept size (a stored hash of costlier parameters) is made for that
    /// hash only.
    fn with<T>(self, blocks: usize, job: impl FnOnce(&mut [Block]) -> T) -> T {
        let kept_size = argon2().params().block_count();
        if self == Memory::Once || blocks > kept_size {
            return job(&mut vec![Block::default(); blocks]);
        }
        MEMORY.with_borrow_mut(|kept| {
            if kept.len() < kept_size {
                kept.resize(kept_size, Block::default());
            }
            job(&mut kept[..blocks])
        })
    }
}

/// Hashes `password` into an Argon2id PHC string with a fresh salt.
pub(super) fn hash(password: &[u8], memory: Memory) -> Result<String, Error> {
    hash_with_salt(password, &SaltString::generate(&mut OsRng), memory)
}

/// [`hash`] with `salt`.
fn hash_with_salt(password: &[u8], salt: &SaltString, memory: Memory) -> Result<String, Error> {
    let argon = argon2();
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt.as_salt().decode_b64(&mut salt_bytes)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let blocks = argon.params().block_count();
    memory.with(blocks, |blocks| {
        argon.hash_password_into_with_memory(password, raw_salt, &mut out, blocks)
    })?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params())?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `phc`: an error only when
/// `phc` is no PHC string; a string that cannot be verified (an unknown
/// algorithm or version, invalid parameters) matches nothing.
pub(super) fn verify(password: &[u8], phc: &str, memory: Memory) -> Result<bool, Error> {
    let parsed = PasswordHash::new(phc)?;
    Ok(matches(password, &parsed, memory).unwrap_or(false))
}

fn matches(password: &[u8], parsed: &PasswordHash<'_>, memory: Memory) -> Result<bool, Error> {
    let (Some(salt), Some(expected)) = (parsed.salt, &parsed.hash) else {
        return Ok(false);
    };
    let algorithm = Algorithm::try_from(parsed.algorithm)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(parsed)?;
    let argon = Argon2::new(algorithm, version, params);
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt.decode_b64(&mut salt_bytes)?;
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = out.get_mut(..expected.len()).ok_or(Error::OutputSize {
        provided: std::cmp::Ordering::Greater,
        expected: Output::MAX_LENGTH,
    })?;
    let blocks = argon.params().block_count();
    memory.with(blocks, |blocks| {
        argon.hash_password_into_with_memory(password, raw_salt, out, blocks)
    })?;
    // `Output`'s comparison takes the same time wherever they differ.
    Ok(Output::new(out)? == *expected)
}

#[cfg(test)]
mod tests {
    use argon2::{PasswordHasher, PasswordVerifier};

    use super::*;

    /// The tests' one password, as bytes.
    const PASSWORD: &[u8] = crate::test_util::PASSWORD.as_bytes();

    #[test]
    fn hashes_into_kept_memory_are_the_crates_own_hashes() {
        let salt = SaltString::generate(&mut OsRng);
        let ours = hash_with_salt(PASSWORD, &salt, Memory::Kept).unwrap();
        let theirs = argon2().hash_password(PASSWORD, &salt).unwrap().to_string();
        assert_eq!(ours, theirs);
        // Again into the same memory, which now holds the first hash's blocks.
        assert_eq!(
            hash_with_salt(PASSWORD, &salt, Memory::Kept).unwrap(),
            theirs
        );
        assert_eq!(
            hash_with_salt(PASSWORD, &salt, Memory::Once).unwrap(),
            theirs
        );
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(argon2().verify_password(PASSWORD, &parsed).is_ok());
        assert!(verify(PASSWORD, &theirs, Memory::Kept).unwrap());
        assert!(!verify(b"wrong horse battery", &theirs, Memory::Kept).unwrap());
        assert!(verify(b"", "not a phc string", Memory::Kept).is_err());
    }

    #[test]
    fn hashes_of_other_variants_and_costlier_parameters_are_verified() {
        let salt = SaltString::generate(&mut OsRng);
        // Argon2i, more memory than is kept, a 48-byte output.
        let params = Params::new(24_576, 1, 2, Some(48)).unwrap();
        let other = Argon2::new(Algorithm::Argon2i, Version::V0x10, params);
        let stored = other.hash_password(PASSWORD, &salt).unwrap().to_string();
        assert!(verify(PASSWORD, &stored, Memory::Kept).unwrap());
        assert!(!verify(b"wrong horse battery", &stored, Memory::Kept).unwrap());
        // Cheaper parameters use the front of the kept memory.
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        );
        let stored = cheap.hash_password(PASSWORD, &salt).unwrap().to_string();
        assert!(verify(PASSWORD, &stored, Memory::Kept).unwrap());
        assert!(!verify(b"wrong horse battery", &stored, Memory::Kept).unwrap());
    }
}
