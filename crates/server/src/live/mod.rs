//! What is live in this server now: the sessions by chain, so that a
//! revocation ends them, and every connection, for `clients` and `kick`.

pub mod clients;
pub mod sessions;
