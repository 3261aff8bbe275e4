//! The accept loop (lab task 1: clients come and go, the listener stays):
//! admits connections up to the limits, spawns one task per connection,
//! and drains them at shutdown. The loop itself never waits for a client.
//!
//! A connection is charged at accept, before any PROXY or TLS work: to
//! `max_connections`, and to its source address (`max_connections_per_ip`,
//! `max_handshakes_per_ip`; a trusted balancer's connection to the
//! balancer's connection count until its header names the client, then to
//! the client). Over a limit it is refused at once (`refuse.rs`). Then its
//! task prepares the transport and runs its session.

mod capacity;
mod refuse;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::OwnedSemaphorePermit,
    time::{Instant, sleep, timeout},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::{
    conn::admission::SourceSlot,
    conn::context::Context,
    conn::session::Session,
    conn::transport::{Stream, TransportError, close_gracefully},
    store::UserStore,
    sys::peer::{ConnectionId, Peer},
    sys::sync::lock,
};
use capacity::Capacity;
use refuse::Throttled;
pub(crate) use refuse::{Refusal, Refuser};

/// Pause after a failed `accept` (out of file descriptors, say), so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub(crate) struct Listener<S> {
    listener: TcpListener,
    ctx: Arc<Context<S>>,
    limit: Capacity,
    refuser: Arc<Refuser>,
    /// Connection tasks ended, whatever became of them (the trimmer's
    /// measure of freed memory: a handshake that never finished held
    /// buffers too).
    ended: Arc<AtomicU64>,
    /// "closed before the first frame" lines: one per 10 s.
    unprepared_log: Arc<Mutex<Throttled>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// Why a connection ended before its session.
enum Unprepared {
    /// The transport step failed.
    Transport(TransportError),
    /// The client a PROXY header named is over its limits.
    Refused(TcpStream, Refusal),
}

impl<S: UserStore> Listener<S> {
    pub(crate) fn new(
        listener: TcpListener,
        ctx: Arc<Context<S>>,
        shutdown: CancellationToken,
    ) -> Self {
        let settings = ctx.settings.now();
        let limit = Capacity::new(settings.limits.max_connections);
        let tls = ctx.acceptor.is_tls();
        let metrics = Arc::clone(&ctx.metrics);
        let refuser = Arc::new(Refuser::new(settings.mode, tls, metrics));
        drop(settings);
        Self {
            listener,
            ctx,
            limit,
            refuser,
            ended: Arc::default(),
            unprepared_log: Arc::default(),
            shutdown,
            tasks: TaskTracker::new(),
        }
    }

    /// The memory trimmer of this listener's connections ([`trim_memory`]),
    /// to run beside [`Listener::serve`]; it ends at shutdown.
    pub(crate) fn trimmer(&self) -> impl Future<Output = ()> + Send + 'static {
        trim_memory(Arc::clone(&self.ended), self.shutdown.clone())
    }

    /// Accepts until shutdown, then drains.
    pub(crate) async fn serve(mut self) {
        // The binary logs its own "listening on" line; this one is for
        // the library's other users.
        if let Ok(local) = self.listener.local_addr() {
            debug!(addr = %local, mode = %self.ctx.settings.now().mode, "accepting connections");
        }
        let mut failures = Throttled::default();
        loop {
            // Stopping first: after a handover (or at shutdown) a client
            // already waiting in the backlog belongs to the new process (or
            // to nobody), not to one that would only tell it `bye`.
            let accepted = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(err) => {
                    // A failed accept concerns one would-be client; the
                    // listener itself is fine, so wait a little and go on.
                    if let Some(unlogged) = failures.tick() {
                        error!(error = %err, since_last_line = unlogged, "accept failed");
                    }
                    tokio::select! {
                        () = self.shutdown.cancelled() => break,
                        () = sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            }
        }
        // Stop listening at once, so new clients are refused by the OS
        // rather than accepted and then told `bye`.
        drop(self.listener);
        drain(&self.tasks, self.ctx.settings.now().timeouts.drain).await;
    }

    /// Charges a new connection to the limits and starts its task, or
    /// refuses it.
    fn admit(&mut self, stream: TcpStream, addr: SocketAddr) {
        let id = ConnectionId::random();
        let span = info_span!(
            "conn",
            %id,
            peer = tracing::field::Empty,
            via = tracing::field::Empty,
            user = tracing::field::Empty
        );
        let _entered = span.enter();
        self.follow_max_connections();
        let Ok(permit) = self.limit.try_acquire() else {
            self.refuser.refuse(stream, Refusal::Busy);
            return;
        };
        let sources = &self.ctx.sources;
        let trusted = self.ctx.acceptor.trusts(addr.ip());
        let limits = &self.ctx.settings.now().limits;
        let slot = match trusted {
            true => sources.admit_balancer(addr.ip(), limits),
            false => sources.admit(addr.ip(), limits),
        };
        let slot = match slot {
            Ok(slot) => slot,
            Err(over) => {
                drop(permit);
                self.refuser.refuse(stream, Refusal::Source(over));
                return;
            }
        };
        let admitted = Admitted {
            ctx: Arc::clone(&self.ctx),
            refuser: Arc::clone(&self.refuser),
            ended: Ended(Arc::clone(&self.ended)),
            unprepared_log: Arc::clone(&self.unprepared_log),
            id,
            permit,
            slot,
            shutdown: self.shutdown.child_token(),
        };
        drop(_entered);
        let connection = admitted.connection(stream, (addr, trusted));
        self.tasks.spawn(connection.instrument(span));
    }

    /// The connection limit as the settings say now (a reload may have
    /// changed it).
    fn follow_max_connections(&mut self) {
        let max = self.ctx.settings.now().limits.max_connections;
        if self.limit.resize(max) {
            let gauge = &self.ctx.metrics.connections_max;
            gauge.set(i64::try_from(max).unwrap_or(i64::MAX));
        }
    }
}

/// A connection that holds its places in the limits.
struct Admitted<S> {
    ctx: Arc<Context<S>>,
    refuser: Arc<Refuser>,
    ended: Ended,
    unprepared_log: Arc<Mutex<Throttled>>,
    id: ConnectionId,
    permit: OwnedSemaphorePermit,
    slot: SourceSlot,
    shutdown: CancellationToken,
}

impl<S: UserStore> Admitted<S> {
    /// One connection's task: the transport steps, then the session.
    /// `trusted`: whether a PROXY header is expected, decided at accept.
    async fn connection(self, tcp: TcpStream, (addr, trusted): (SocketAddr, bool)) {
        let deadline = Instant::now() + self.ctx.settings.now().timeouts.handshake;
        let Self {
            ctx,
            refuser,
            ended: _ended,
            unprepared_log,
            id,
            permit,
            slot,
            shutdown,
        } = self;
        let accepted = (addr, trusted);
        let prepared = prepare(&ctx, tcp, accepted, slot, deadline, &shutdown).await;
        let (stream, peer, slot) = match prepared {
            Ok(prepared) => prepared,
            Err(Unprepared::Refused(tcp, why)) => return refuser.refuse_named(tcp, why).await,
            Err(Unprepared::Transport(err)) if err.is_notable() => {
                // A flood of these must not fill the disk: one line per 10 s.
                if let Some(unlogged) = lock(&unprepared_log).tick() {
                    warn!(%addr, error = %err, since_last_line = unlogged, "closed before the first frame");
                }
                return;
            }
            Err(Unprepared::Transport(err)) => {
                return debug!(%addr, error = %err, "dropped before the first frame");
            }
        };
        let secure = stream.is_tls();
        let session = Session::new(stream, peer, secure, id, ctx, shutdown, slot);
        if let Some(stream) = session.run(deadline, permit).await {
            close_gracefully(stream).await;
        }
    }
}

/// Counts a connection task as ended when dropped, on every path.
struct Ended(Arc<AtomicU64>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The transport steps: the PROXY header (then the connection's charge
/// moves from the balancer to the client it names), then TLS.
async fn prepare<S: UserStore>(
    ctx: &Context<S>,
    mut tcp: TcpStream,
    (addr, trusted): (SocketAddr, bool),
    slot: SourceSlot,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> Result<(Stream, Peer, SourceSlot), Unprepared> {
    let acceptor = &ctx.acceptor;
    let stop = || cut_unless_restarting(shutdown, &ctx.restarting);
    let peer = acceptor
        .peer(&mut tcp, (addr, trusted), deadline, stop())
        .await
        .map_err(Unprepared::Transport)?;
    // The real client, once the transport step knows it.
    let span = tracing::Span::current();
    span.record("peer", tracing::field::display(peer.addr));
    if let Some(via) = peer.via {
        span.record("via", tracing::field::display(via));
    }
    let slot = match trusted {
        false => slot,
        true => {
            drop(slot);
            let limits = &ctx.settings.now().limits;
            match ctx.sources.admit(peer.ip(), limits) {
                Ok(slot) => slot,
                Err(over) => return Err(Unprepared::Refused(tcp, Refusal::Source(over))),
            }
        }
    };
    let stream = acceptor
        .secure(tcp, deadline, stop())
        .await
        .map_err(Unprepared::Transport)?;
    Ok((stream, peer, slot))
}

/// What cuts the transport steps short: shutdown, but not a handover to a
/// new process (`restarting`, set before the connections' tokens are
/// cancelled). A client whose PROXY header or TLS handshake is on its way
/// then finishes it (within the handshake's deadline) and is told `bye
/// {restart}` like the others, instead of losing a connection it cannot
/// tell from a failure.
async fn cut_unless_restarting(shutdown: &CancellationToken, restarting: &AtomicBool) {
    shutdown.cancelled().await;
    if restarting.load(Ordering::Acquire) {
        std::future::pending::<()>().await;
    }
}

/// How often to check whether many connections have closed.
const TRIM_INTERVAL: Duration = Duration::from_secs(2);
/// Connections closed since the last trim that make another worth it.
const TRIM_AFTER_CLOSED: u64 = 256;

/// Gives the memory of closed connections back to the OS. The allocator
/// keeps freed memory for reuse, so after a burst of clients the process
/// would stay at its peak size; once many connections have closed, this asks
/// it to return the free pages (a few milliseconds, on the blocking pool).
async fn trim_memory(ended: Arc<AtomicU64>, shutdown: CancellationToken) {
    let mut closed_at_last_trim = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = sleep(TRIM_INTERVAL) => {}
        }
        let closed = ended.load(Ordering::Relaxed);
        if closed - closed_at_last_trim >= TRIM_AFTER_CLOSED {
            closed_at_last_trim = closed;
            let _ = tokio::task::spawn_blocking(release_free_memory).await;
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim takes an integer and only walks the allocator's
    // own free lists, which it locks itself.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

/// Waits up to `drain` for every connection task to finish; they have all
/// seen the shutdown signal and are saying `bye`.
async fn drain(tasks: &TaskTracker, drain: Duration) {
    tasks.close();
    info!(
        open = tasks.len(),
        "shutting down: waiting for connections to close"
    );
    if timeout(drain, tasks.wait()).await.is_err() {
        warn!(
            still_open = tasks.len(),
            ?drain,
            "drain time is over; closing the remaining connections"
        );
    } else {
        info!("all connections closed");
    }
}
