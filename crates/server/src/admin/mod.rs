//! Administration: the user, session and identity operations on a store, and the
//! control socket that carries them (and `clients`, `kick`) to a running
//! server.

pub mod control;
mod ops;

pub use ops::AdminError;
