//! The per-connection path, from the socket inwards: the accept loop and
//! its limits, the step before the first frame (PROXY header, TLS), and
//! one session per connection with the commands a client can `say`.

pub(crate) mod admission;
pub mod certs;
pub(crate) mod commands;
pub(crate) mod context;
pub(crate) mod listener;
pub(crate) mod session;
pub mod transport;
