//! What only the tests and the benchmarks need beyond the facade, behind
//! the `test-util` feature: the password hasher, to fill a store quickly,
//! and a clock the tests move by hand.

pub use crate::auth::Passwords;
pub use crate::sys::clock::ManualClock;
