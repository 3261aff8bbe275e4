//! The echo-server daemon as a library: `main.rs` parses flags, sets up
//! logging, opens the store and calls [`run`]; tests do the same on
//! `127.0.0.1:0`.
//!
//! The parts, from the socket inwards (`docs/ARCHITECTURE.md` has the
//! picture and the path of one message):
//!
//! - [`config`]: settings from flags, environment, config file and prompt.
//! - [`net`]: binding, with the move to the next free port (lab task 4).
//! - [`logging`]: rotating log files through `tracing` (lab task 3).
//! - [`daemon`]: detaching, the pid file, readiness for systemd.
//! - `server`: [`Server`], which assembles the shared `context` (settings,
//!   authenticator, counters, transport) and hands it to the listener.
//! - `listener`: the accept loop, the connection limit and shutdown (lab
//!   task 1: any client may come and go; the listener never stops for it).
//! - [`admission`]: connections and handshakes per source address.
//! - [`transport`]: the step between accept and the first frame, where a
//!   PROXY header and a TLS handshake go; [`transport::Peer`].
//! - `session`: one per connection, the state machine hello → identify or
//!   authenticate → echo (lab tasks 5, 6 and 8), frame I/O in its `wire`.
//! - [`commands`]: the `/commands` a client can `say`, parsed and run.
//! - [`auth`]: the authenticator, where store, attempt ledger and passwords
//!   meet; names, tokens and Argon2id.
//! - [`store`]: the [`store::UserStore`] trait, the store chosen at run time,
//!   and the embedded file store (users, identities by IP, sessions),
//!   durable before anything is acknowledged.
//! - [`live`]: the live sessions by chain, so a revocation ends them;
//!   [`clients`]: every live connection, for `echo-server clients` / `kick`.
//! - [`names`]: what a name may be, and when two names are one user.
//! - [`clock`]: where "now" comes from.
//! - [`files`]: private directories and files, temporary files created
//!   exclusively.
//! - [`admin`]: `echo-server user …` / `session …`; [`control`]: the same
//!   (and `clients`, `kick`) on a running server, through its control socket.
//! - [`tls`]: the server's certificate and key (given or generated), and
//!   their reload on SIGHUP.
//! - [`metrics`]: the Prometheus metrics, which `/stats` reads too;
//!   `http`: the operator's port that serves them, and `/healthz`.

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

pub use admin::{AdminError, control};
pub use config::ServerConfig;
pub use conn::certs::ServerTls;
pub use ops::{daemon, http::MAX_CONNECTIONS as MAX_METRICS_CONNECTIONS, logging};
pub use server::Server;
pub use sys::{
    clock,
    net::{Bound, bind_with_fallback},
};

use auth::HashError;
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
) -> Result<(), HashError> {
    Server::new(config, store).serve(listener, shutdown).await
}
