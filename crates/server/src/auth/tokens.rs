//! Session tokens: what a client holds between connections. The store only
//! ever sees their SHA-256 ([`crate::store::TokenHash`]).

use argon2::password_hash::rand_core::{OsRng, RngCore};
use echo_proto::Secret;

/// A fresh session token: 256 bits from the OS generator, as 64 hex digits.
pub fn new_token() -> Secret {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    Secret::new(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_random_bits() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
