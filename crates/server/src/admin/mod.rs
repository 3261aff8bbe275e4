//! Administration: the user, session and identity operations on a store, and the
//! control socket that carries them (and `clients`, `kick`, `reload`) to a
//! running server; the reload itself (`reload.rs`).

pub mod control;
mod ops;
pub mod reload;

pub use ops::AdminError;
