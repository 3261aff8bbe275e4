//! [`Server`]: a configured server, assembled into a shared context and
//! handed to the listener.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    admin::control::{self, ControlSocket},
    auth::{AttemptLedger, Authenticator, HashError, MemoryLedger, Passwords},
    config::ServerConfig,
    conn::admission::Sources,
    conn::certs::ServerTls,
    conn::context::Context,
    conn::listener::Listener,
    conn::transport::Acceptor,
    live::clients::Clients,
    ops::http::{self, Health},
    ops::metrics::Metrics,
    store::{Timed, UserStore},
    sys::clock::{Clock, SystemClock},
};

/// Accounts and addresses whose failed attempts are tracked at once by the
/// in-memory ledger.
const ATTEMPT_TRACKING_CAP: usize = 10_000;

/// Longest wait at start for a shared store's revocations to be heard.
const REVOCATIONS_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A server ready to serve: its settings, its store, its clock and where it
/// counts attempts.
#[derive(Debug)]
pub struct Server<S> {
    config: ServerConfig,
    store: S,
    clock: Arc<dyn Clock>,
    ledger: Option<Arc<dyn AttemptLedger>>,
    metrics_listener: Option<TcpListener>,
    control: Option<ControlSocket>,
    tls: Option<Arc<ServerTls>>,
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
            metrics_listener: None,
            control: None,
            tls: None,
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

    /// Serves `/metrics` and `/healthz` on `listener` (`--metrics-addr`)
    /// while the server runs.
    pub fn with_metrics_listener(mut self, listener: TcpListener) -> Self {
        self.metrics_listener = Some(listener);
        self
    }

    /// Serves the admin commands on `socket` (see [`control::bind`]).
    pub fn with_control_socket(mut self, socket: ControlSocket) -> Self {
        self.control = Some(socket);
        self
    }

    /// Speaks TLS with `tls`'s certificate (`--tls`); the caller keeps a
    /// handle to reload it.
    pub fn with_tls(mut self, tls: Arc<ServerTls>) -> Self {
        self.tls = Some(tls);
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
        let passwords = Passwords::start(self.config.auth.password_workers).await?;
        let metrics = Arc::new(Metrics::new());
        let config = self.config;
        let ledger = self.ledger.unwrap_or_else(|| {
            Arc::new(MemoryLedger::new(
                ATTEMPT_TRACKING_CAP,
                config.auth.attempts_per_minute,
            ))
        });
        let store = Timed::new(self.store, Arc::clone(&metrics));
        let auth = Authenticator::new(
            store.clone(),
            passwords,
            ledger,
            Arc::clone(&self.clock),
            config.auth.min_password_length,
            Arc::clone(&metrics),
        );
        let clients = Arc::<Clients>::default();
        // Administration while running: `echo-server user ...` and friends.
        let stop_side_tasks = CancellationToken::new();
        let control = self.control.map(|socket| {
            tokio::spawn(control::serve(
                socket,
                store.clone(),
                (Arc::clone(auth.live()), Arc::clone(&clients)),
                config.auth.min_password_length,
                self.clock,
                stop_side_tasks.clone(),
            ))
        });
        let revocations = store.revocations().map(|heard| {
            tokio::spawn(crate::live::sessions::follow_revocations(
                Arc::clone(auth.live()),
                store.clone(),
                heard,
                stop_side_tasks.clone(),
            ))
        });
        // Serve only once a revocation anywhere would reach this server's
        // connections (or, if the database does not answer, after a while).
        if tokio::time::timeout(REVOCATIONS_WAIT, store.hearing_revocations())
            .await
            .is_err()
        {
            tracing::warn!("not yet hearing revocations from the store; serving anyway");
        }
        let acceptor = Acceptor::new(
            config.listen.proxy_protocol_from.clone(),
            self.tls,
            config.timeouts.tls_handshake,
        );
        let sources = Sources::new(
            config.limits.max_connections_per_ip,
            config.limits.max_handshakes_per_ip,
        );
        let context = Arc::new(Context {
            sources,
            config,
            auth,
            metrics: Arc::clone(&metrics),
            acceptor,
            clients,
        });
        let http = self.metrics_listener.map(|http_listener| {
            let probe = store.clone();
            let health = Health {
                draining: shutdown.clone(),
                store_unreachable: Arc::new(move || probe.is_unreachable()),
            };
            tokio::spawn(http::serve(
                http_listener,
                metrics,
                health,
                context.config.metrics.idle_timeout,
                stop_side_tasks.clone(),
            ))
        });
        Listener::new(listener, context, shutdown).serve().await;
        stop_side_tasks.cancel();
        for task in [http, control, revocations].into_iter().flatten() {
            let _ = task.await;
        }
        Ok(())
    }
}
