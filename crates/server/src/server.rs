//! [`Server`]: a configured server, assembled into a shared context and
//! handed to the listener.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    admission::Sources,
    auth::{AttemptLedger, Authenticator, HashError, MemoryLedger, Passwords},
    clock::{Clock, SystemClock},
    config::ServerConfig,
    context::Context,
    listener::Listener,
    stats::Stats,
    store::UserStore,
    transport::Acceptor,
};

/// Accounts and addresses whose failed attempts are tracked at once by the
/// in-memory ledger.
const ATTEMPT_TRACKING_CAP: usize = 10_000;

/// A server ready to serve: its settings, its store, its clock and where it
/// counts attempts.
#[derive(Debug)]
pub struct Server<S> {
    config: ServerConfig,
    store: S,
    clock: Arc<dyn Clock>,
    ledger: Option<Arc<dyn AttemptLedger>>,
}

impl<S: UserStore> Server<S> {
    /// A server with `config` over `store`, on the system clock, counting
    /// attempts in memory.
    pub fn new(config: ServerConfig, store: S) -> Self {
        Self {
            config,
            store,
            clock: Arc::new(SystemClock),
            ledger: None,
        }
    }

    /// Uses `clock` for session times and attempt limits (tests move it).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Counts password attempts in `ledger` instead of this process's memory.
    pub fn with_ledger(mut self, ledger: Arc<dyn AttemptLedger>) -> Self {
        self.ledger = Some(ledger);
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
        let passwords = Passwords::start(self.config.password_workers).await?;
        let config = self.config;
        let ledger = self.ledger.unwrap_or_else(|| {
            Arc::new(MemoryLedger::new(
                ATTEMPT_TRACKING_CAP,
                config.auth_attempts_per_minute,
            ))
        });
        let auth = Authenticator::new(
            self.store,
            passwords,
            ledger,
            self.clock,
            config.min_password_length,
            Arc::default(),
        );
        let sources = Sources::new(config.max_connections_per_ip, config.max_handshakes_per_ip);
        let context = Arc::new(Context {
            sources,
            config,
            auth,
            stats: Arc::new(Stats::new()),
            acceptor: Acceptor::default(),
        });
        Listener::new(listener, context, shutdown).serve().await;
        Ok(())
    }
}
