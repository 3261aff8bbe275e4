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
mod trim;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
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
use trim::{Churn, Gone, trim_memory};

/// Pause after a failed `accept` (out of file descriptors, say), so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub(crate) struct Listener<S> {
    listener: TcpListener,
    ctx: Arc<Context<S>>,
    limit: Capacity,
    refuser: Arc<Refuser>,
    /// Connections come and gone: the trimmer's measure of freed memory.
    churn: Churn,
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
            churn: Churn::default(),
            unprepared_log: Arc::default(),
            shutdown,
            tasks: TaskTracker::new(),
        }
    }

    /// The memory trimmer of this listener's connections ([`trim_memory`]),
    /// to run beside [`Listener::serve`]; it ends at shutdown.
    pub(crate) fn trimmer(&self) -> impl Future<Output = ()> + Send + 'static {
        trim_memory(self.churn.clone(), self.shutdown.clone())
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
        // A connection that came counts for the trimmer too: its
        // handshake leaves garbage between the sessions that stay.
        self.churn.tick();
        let admitted = Admitted {
            ctx: Arc::clone(&self.ctx),
            refuser: Arc::clone(&self.refuser),
            ended: self.churn.on_drop(),
            unprepared_log: Arc::clone(&self.unprepared_log),
            id,
            permit,
            slot,
            // The listener's own token: nothing cancels one connection's
            // alone (its stopper, a child of this, is what stops it).
            shutdown: self.shutdown.clone(),
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
    ended: Gone,
    unprepared_log: Arc<Mutex<Throttled>>,
    id: ConnectionId,
    permit: OwnedSemaphorePermit,
    slot: SourceSlot,
    shutdown: CancellationToken,
}

impl<S: UserStore> Admitted<S> {
    /// One connection's task: the transport steps, then the session.
    /// `trusted`: whether a PROXY header is expected, decided at accept.
    /// Not an `async fn`, for the reason [`Session::run`] gives.
    fn connection(
        self,
        tcp: TcpStream,
        (addr, trusted): (SocketAddr, bool),
    ) -> impl Future<Output = ()> {
        let deadline = Instant::now() + self.ctx.settings.now().timeouts.handshake;
        let Self {
            ctx,
            refuser,
            ended,
            unprepared_log,
            id,
            permit,
            slot,
            shutdown,
        } = self;
        async move {
            let _ended = ended;
            // The transport steps and the goodbye are boxed: a future is
            // as large as its largest state, and this one is held for as
            // long as the connection lives; the TLS handshake's state
            // alone is several KiB, freed once it is over (#30).
            let accepted = (addr, trusted);
            let prepared = prepare(&ctx, tcp, accepted, slot, deadline, &shutdown);
            let (stream, peer, slot) = match Box::pin(prepared).await {
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
            // Made and run in one expression: a session kept in a
            // variable would take room of its own in this future, beside
            // the one it is moved into.
            let session =
                Session::new(stream, peer, secure, id, ctx, shutdown, slot).run(deadline, permit);
            if let Some(stream) = session.await {
                Box::pin(close_gracefully(stream)).await;
            }
        }
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

#[cfg(test)]
mod tests;
