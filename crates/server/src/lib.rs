//! The echo-server daemon as a library: the binary (`src/bin/echo-server/`)
//! parses flags, sets up logging, opens the store and calls [`run`]; tests
//! and the bench do the same on `127.0.0.1:0`.
//!
//! This file is the facade: [`Server`] and [`ServerConfig`], [`store::open`]
//! and the store types, [`control`] (the control socket's client),
//! [`reload`] (re-reading the settings), [`ServerTls`], [`daemon`],
//! [`upgrade`] (replacing the running process without closing the port),
//! [`inherit`] (sockets handed over, or from systemd), [`logging`], [`clock`]
//! and [`bind_with_fallback`].
//! What only the tests and the bench need is in `test_util`, behind the
//! `test-util` feature. Inside, the folders are layers, each importing only
//! the ones below it (`docs/ARCHITECTURE.md` has the map and the path of one
//! message; `tests/it/layers.rs` checks the direction):
//!
//! - `conn`: the per-connection path: the accept loop and its limits, the
//!   PROXY header and TLS step, one session per connection (lab tasks 1, 5,
//!   6 and 8), the `/commands`.
//! - `admin`: user and session operations, and the control socket that
//!   carries them (and `clients`, `kick`) to a running server.
//! - [`config`]: settings from flags, environment, config file and prompt.
//! - `auth`: the authenticator, where store, attempt ledger and passwords
//!   meet; tokens and Argon2id.
//! - `live`: the live sessions by chain, so a revocation ends them, and every
//!   live connection.
//! - [`store`]: the [`store::UserStore`] trait, the attempt ledger, the store
//!   chosen at run time (file or PostgreSQL).
//! - `ops`: metrics and the operator's HTTP port, log files (lab task 3),
//!   running as a daemon.
//! - `sys`: the clock, private files, binding with the move to the next free
//!   port (lab task 4), names, peers and sources, the mutex helper.

mod admin;
mod auth;
pub mod config;
mod conn;
mod live;
mod ops;
mod server;
pub mod store;
mod sys;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

pub use admin::{AdminError, control, reload};
pub use config::ServerConfig;
pub use conn::certs::ServerTls;
pub use ops::{daemon, http::MAX_CONNECTIONS as MAX_METRICS_CONNECTIONS, logging, upgrade};
pub use server::{ServeError, Server};
pub use sys::{
    clock, inherit,
    net::{Bound, bind_with_fallback},
};

use store::UserStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves clients with `config` over `store` until `shutdown`; see
/// [`Server::serve`].
pub async fn run<S: UserStore>(
    config: ServerConfig,
    store: S,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    Server::new(config, store).serve(listener, shutdown).await
}
