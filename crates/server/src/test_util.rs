//! What only the tests and the benchmarks need beyond the facade, behind
//! the `test-util` feature (and in the lib's own unit tests): the password
//! hasher, to fill a store quickly, a clock the tests move by hand, and the
//! one password every test registers with (`echo-testkit` re-exports them).

pub use crate::auth::Passwords;
pub use crate::sys::clock::ManualClock;

/// The password every test registers with.
pub const PASSWORD: &str = "correct horse battery";
