//! What only the tests and the benchmarks need beyond the facade, behind
//! the `test-util` feature: the password hasher, to fill a store quickly.

pub use crate::auth::Passwords;
