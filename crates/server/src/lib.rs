//! The echo-server daemon as a library: `main.rs` parses flags, sets up
//! logging and calls [`run`]; tests call [`run`] directly on `127.0.0.1:0`.
//!
//! The parts:
//!
//! - [`config`]: settings from flags, environment, config file and prompt.
//! - [`net`]: binding, with the move to the next free port (lab task 4).
//! - [`logging`]: rotating log files through `tracing` (lab task 3).
//! - [`daemon`]: detaching, the pid file, readiness for systemd.
//! - `listener`: the accept loop, the connection limit and shutdown (lab
//!   task 1: any client may come and go; the listener never stops for it).
//! - `connection`: one task per client, the state machine hello → identify
//!   → authenticate → echo (lab tasks 5, 6 and 8).
//! - [`commands`]: the `/commands` a client can `say`.

pub mod commands;
pub mod config;
mod connection;
pub mod daemon;
mod listener;
pub mod logging;
pub mod net;
pub mod prompt;
pub mod stats;
pub mod store;

use std::sync::Arc;

pub use config::ServerConfig;
pub use net::{Bound, bind_with_fallback};
use stats::Stats;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What every connection handler shares: a cheap `Arc` clone per task.
#[derive(Debug)]
pub(crate) struct Shared {
    config: ServerConfig,
    stats: Arc<Stats>,
}

/// Serves clients on `listener` until `shutdown` is cancelled, then tells
/// every client `bye`, waits up to the configured drain time for their
/// handlers to finish, and returns.
pub async fn run(config: ServerConfig, listener: TcpListener, shutdown: CancellationToken) {
    let shared = Arc::new(Shared {
        config,
        stats: Arc::new(Stats::new()),
    });
    listener::Listener::new(listener, shared, shutdown)
        .serve()
        .await;
}
