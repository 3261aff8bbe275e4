//! The echo-server daemon as a library: `main.rs` parses flags, sets up
//! logging, opens the store and calls [`Server::serve`]; tests do the same
//! on `127.0.0.1:0`.
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
//! - [`store`]: the [`store::UserStore`] trait and the embedded file store
//!   (users, identities by IP, sessions), durable before anything is
//!   acknowledged.
//! - [`auth`]: passwords (Argon2id), names, tokens and attempt limits.
//! - [`admin`]: `echo-server user …` / `session …` on a stopped server's store.
//! - [`stats`]: the counters behind `/stats`.

pub mod admin;
pub mod auth;
pub mod commands;
pub mod config;
mod connection;
pub mod daemon;
mod listener;
pub mod logging;
pub mod net;
pub mod stats;
pub mod store;

use std::sync::Arc;

use auth::{AttemptLimits, Clock, HashError, Passwords, SystemClock};
pub use config::ServerConfig;
pub use net::{Bound, bind_with_fallback};
use stats::Stats;
use store::UserStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Accounts and addresses whose failed attempts are tracked at once.
const ATTEMPT_TRACKING_CAP: usize = 10_000;

/// A server ready to serve: its settings, its store and its clock.
#[derive(Debug)]
pub struct Server<S> {
    config: ServerConfig,
    store: S,
    clock: Arc<dyn Clock>,
}

/// What every connection handler shares: a cheap `Arc` clone per task.
#[derive(Debug)]
pub(crate) struct Shared<S> {
    config: ServerConfig,
    stats: Arc<Stats>,
    store: S,
    passwords: Passwords,
    limits: AttemptLimits,
    clock: Arc<dyn Clock>,
}

impl<S: UserStore> Server<S> {
    /// A server with `config` over `store`, on the system clock.
    pub fn new(config: ServerConfig, store: S) -> Self {
        Self {
            config,
            store,
            clock: Arc::new(SystemClock),
        }
    }

    /// Uses `clock` for session times and attempt limits (tests move it).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Serves clients on `listener` until `shutdown` is cancelled, then
    /// tells every client `bye`, waits up to the configured drain time for
    /// their handlers to finish, and returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), HashError> {
        let passwords = tokio::task::spawn_blocking(Passwords::new)
            .await
            .map_err(|err| HashError::from_join(&err))??;
        let limits = AttemptLimits::new(ATTEMPT_TRACKING_CAP, self.config.auth_attempts_per_minute);
        let shared = Arc::new(Shared {
            config: self.config,
            stats: Arc::new(Stats::new()),
            store: self.store,
            passwords,
            limits,
            clock: self.clock,
        });
        listener::Listener::new(listener, shared, shutdown)
            .serve()
            .await;
        Ok(())
    }
}

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
