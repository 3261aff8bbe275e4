//! [`Server`]: a configured server, assembled into a shared context and
//! handed to the listener.

use std::sync::{Arc, atomic::AtomicBool};

use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    admin::control::{self, ControlSocket, Live, UpgradeRequests},
    admin::reload::Reloader,
    auth::{AttemptLedger, AttemptRate, Authenticator, HashError, MemoryLedger, Passwords},
    config::{ServerConfig, Settings},
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

/// What stops [`Server::serve`] before it serves.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The password workers (threads of their own) could not be started.
    #[error(transparent)]
    Passwords(#[from] HashError),
}

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
    upgrades: Option<UpgradeRequests>,
    handover: Option<CancellationToken>,
    reloader: Option<Arc<Reloader>>,
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
            upgrades: None,
            handover: None,
            reloader: None,
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

    /// Passes `echo-server upgrade` requests of the control socket to
    /// `upgrades`; when `handover` is cancelled (a new process serves the
    /// port), stops accepting on the port and the metrics port and drains
    /// as at shutdown, each client told `bye {restart}`.
    pub fn with_upgrades(mut self, upgrades: UpgradeRequests, handover: CancellationToken) -> Self {
        self.upgrades = Some(upgrades);
        self.handover = Some(handover);
        self
    }

    /// Serves the settings `reloader` holds (made of the same config), and
    /// lets `echo-server reload` replace them; the caller keeps a handle for
    /// SIGHUP.
    pub fn with_reloader(mut self, reloader: Arc<Reloader>) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// Serves clients on `listener` until `shutdown` is cancelled, then
    /// tells every client `bye`, waits up to the configured drain time for
    /// their handlers to finish, stops the side tasks, and returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), ServeError> {
        let passwords = Passwords::start(self.config.auth.password_workers).await?;
        let metrics = new_metrics(self.config.limits.max_connections);
        let store = Timed::new(self.store, Arc::clone(&metrics));
        let settings = match &self.reloader {
            Some(reloader) => reloader.settings().clone(),
            None => Settings::new(self.config.clone()),
        };
        let ledger = self
            .ledger
            .unwrap_or_else(|| Arc::new(MemoryLedger::new(ATTEMPT_TRACKING_CAP)));
        let auth = Authenticator::new(
            store.clone(),
            passwords,
            (ledger, attempt_rate(&settings)),
            Arc::clone(&self.clock),
            self.config.auth.min_password_length,
            Arc::clone(&metrics),
        );
        let mut side = SideTasks::new();
        let clients = Arc::<Clients>::default();
        if let Some(socket) = self.control {
            let live = live(&auth, &clients, self.upgrades, self.reloader);
            side.serve_control(socket, &store, live, self.clock, &self.config);
        }
        side.follow_revocations(&store, &auth);
        wait_for_revocations(&store).await;
        let acceptor = Acceptor::new(settings.clone(), self.tls);
        let context = Arc::new(Context {
            sources: Sources::default(),
            settings,
            auth,
            metrics: Arc::clone(&metrics),
            acceptor,
            clients,
            restarting: Arc::default(),
        });
        let (draining, metrics_accepting) =
            side.hand_over(self.handover, &shutdown, &context.restarting);
        if let Some(http_listener) = self.metrics_listener {
            let health = (&shutdown, metrics_accepting);
            side.serve_http(http_listener, &store, metrics, &self.config, health);
        }
        let accepting = Listener::new(listener, context, draining);
        side.tasks.spawn(accepting.trimmer());
        accepting.serve().await;
        side.stop().await;
        Ok(())
    }
}

/// The metrics, knowing the connection limit.
fn new_metrics(max_connections: usize) -> Arc<Metrics> {
    let metrics = Arc::new(Metrics::new());
    metrics
        .connections_max
        .set(i64::try_from(max_connections).unwrap_or(i64::MAX));
    metrics
}

/// What the control socket adds to a request: the live registries, where
/// `upgrade` goes and what `reload` asks.
fn live<S: UserStore>(
    auth: &Authenticator<Timed<S>>,
    clients: &Arc<Clients>,
    upgrades: Option<UpgradeRequests>,
    reloader: Option<Arc<Reloader>>,
) -> Live {
    Live {
        sessions: Arc::clone(auth.live()),
        clients: Arc::clone(clients),
        port: None,
        upgrades,
        reloader,
    }
}

/// The password attempts a source may make a minute, as the settings in
/// force say at each attempt.
fn attempt_rate(settings: &Settings) -> AttemptRate {
    let settings = settings.clone();
    Arc::new(move || settings.now().auth.attempts_per_minute)
}

/// Serve only once a revocation anywhere would reach this server's
/// connections (or, if the database does not answer, after a while).
async fn wait_for_revocations<S: UserStore>(store: &Timed<S>) {
    if tokio::time::timeout(REVOCATIONS_WAIT, store.hearing_revocations())
        .await
        .is_err()
    {
        tracing::warn!("not yet hearing revocations from the store; serving anyway");
    }
}

/// The tasks that run beside the listener while it serves: the control
/// socket, the revocation follower, the metrics port (all three until
/// [`SideTasks::stop`] cancels their token) and the listener's memory
/// trimmer (until shutdown). `stop` waits for them all.
struct SideTasks {
    tasks: JoinSet<()>,
    stop: CancellationToken,
}

impl SideTasks {
    fn new() -> Self {
        Self {
            tasks: JoinSet::new(),
            stop: CancellationToken::new(),
        }
    }

    /// Administration while running: `echo-server user ...` and friends.
    fn serve_control<S: UserStore>(
        &mut self,
        socket: ControlSocket,
        store: &Timed<S>,
        live: Live,
        clock: Arc<dyn Clock>,
        config: &ServerConfig,
    ) {
        self.tasks.spawn(control::serve(
            socket,
            store.clone(),
            live,
            config.auth.min_password_length,
            clock,
            self.stop.clone(),
        ));
    }

    /// Ends the live sessions other servers revoke, for a store they share.
    fn follow_revocations<S: UserStore>(
        &mut self,
        store: &Timed<S>,
        auth: &Authenticator<Timed<S>>,
    ) {
        if let Some(heard) = store.revocations() {
            self.tasks.spawn(crate::live::sessions::follow_revocations(
                Arc::clone(auth.live()),
                store.clone(),
                heard,
                self.stop.clone(),
            ));
        }
    }

    /// `/metrics` and `/healthz` on `listener` until `stop`; unhealthy
    /// while `draining` is cancelled or the store is unreachable.
    fn serve_http<S: UserStore>(
        &mut self,
        listener: TcpListener,
        store: &Timed<S>,
        metrics: Arc<Metrics>,
        config: &ServerConfig,
        (draining, stop): (&CancellationToken, CancellationToken),
    ) {
        let probe = store.clone();
        let health = Health {
            draining: draining.clone(),
            store_unreachable: Arc::new(move || probe.is_unreachable()),
        };
        self.tasks.spawn(http::serve(
            listener,
            metrics,
            health,
            config.metrics.idle_timeout,
            stop,
        ));
    }

    /// The tokens that stop the port's accepting (and its connections:
    /// cancelled at `shutdown` too) and the metrics port's (cancelled when
    /// the side tasks stop too). Once `handover` (if any) is cancelled, the
    /// connections are to say `bye {restart}` (`restarting`), and both are
    /// cancelled.
    fn hand_over(
        &mut self,
        handover: Option<CancellationToken>,
        shutdown: &CancellationToken,
        restarting: &Arc<AtomicBool>,
    ) -> (CancellationToken, CancellationToken) {
        let draining = shutdown.child_token();
        let metrics_accepting = self.stop.child_token();
        let Some(handover) = handover else {
            return (draining, metrics_accepting);
        };
        let stops = [draining.clone(), metrics_accepting.clone()];
        let restarting = Arc::clone(restarting);
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = handover.cancelled() => {
                    // Before the connections see their token cancelled.
                    restarting.store(true, std::sync::atomic::Ordering::Release);
                    stops.iter().for_each(CancellationToken::cancel);
                }
            }
        });
        (draining, metrics_accepting)
    }

    /// Tells every side task to stop and waits until all have.
    async fn stop(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}
