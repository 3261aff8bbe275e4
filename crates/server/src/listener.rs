//! The accept loop (lab task 1: clients come and go, the listener stays):
//! admits connections up to the limit, spawns one task per connection, and
//! drains them at shutdown. The loop itself never waits for a client: each
//! task prepares its transport, then runs its session (or says
//! `server_busy`).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use echo_proto::{ErrorCode, Mode, ServerMsg, ext::AsyncFrameWrite};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, sleep, timeout},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::{
    admission::OverLimit,
    context::Context,
    metrics::Metrics,
    session::{Session, hello},
    store::UserStore,
    transport::{ConnectionId, Stream, close_gracefully},
};

/// Pause after a failed `accept` (out of file descriptors, say), so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Time allowed to tell an extra client that it cannot be served.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) struct Listener<S> {
    listener: TcpListener,
    ctx: Arc<Context<S>>,
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl<S: UserStore> Listener<S> {
    pub(crate) fn new(
        listener: TcpListener,
        ctx: Arc<Context<S>>,
        shutdown: CancellationToken,
    ) -> Self {
        let limit = Arc::new(Semaphore::new(ctx.config.max_connections));
        Self {
            listener,
            ctx,
            limit,
            shutdown,
            tasks: TaskTracker::new(),
        }
    }

    /// Accepts until shutdown, then drains.
    pub(crate) async fn serve(self) {
        let trimmer = tokio::spawn(trim_memory(
            Arc::clone(&self.ctx.metrics),
            self.shutdown.clone(),
        ));
        let local = self.listener.local_addr().ok();
        info!(addr = ?local, mode = ?self.ctx.config.mode, "server started");
        let mut failures = AcceptFailures::default();
        loop {
            let accepted = tokio::select! {
                () = self.shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(err) => {
                    // A failed accept concerns one would-be client; the
                    // listener itself is fine, so wait a little and go on.
                    failures.log(&err);
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
        drain(&self.tasks, self.ctx.config.drain_timeout).await;
        trimmer.abort();
    }

    fn admit(&self, stream: TcpStream, addr: SocketAddr) {
        let id = ConnectionId::random();
        let span = info_span!(
            "conn",
            %id,
            peer = tracing::field::Empty,
            via = tracing::field::Empty,
            user = tracing::field::Empty
        );
        let permit = Arc::clone(&self.limit).try_acquire_owned().ok();
        let task = connection(
            Arc::clone(&self.ctx),
            stream,
            addr,
            id,
            permit,
            self.shutdown.child_token(),
        );
        self.tasks.spawn(task.instrument(span));
    }
}

/// One connection's task: the transport step, then the session, or, over
/// the connection limit, `server_busy` at once.
async fn connection<S: UserStore>(
    ctx: Arc<Context<S>>,
    tcp: TcpStream,
    addr: SocketAddr,
    id: ConnectionId,
    permit: Option<OwnedSemaphorePermit>,
    shutdown: CancellationToken,
) {
    let now = Instant::now();
    let deadline = match permit {
        Some(_) => now + ctx.config.handshake_timeout,
        None => now + REFUSE_TIMEOUT,
    };
    let (stream, peer) = match ctx.acceptor.prepare(tcp, addr, deadline, &shutdown).await {
        Ok(prepared) => prepared,
        Err(err) if err.is_notable() => {
            warn!(%addr, error = %err, "closed before the first frame");
            return;
        }
        Err(err) => {
            debug!(%addr, error = %err, "dropped before the first frame");
            return;
        }
    };
    // The real client, once the transport step knows it.
    let span = tracing::Span::current();
    span.record("peer", tracing::field::display(peer.addr));
    if let Some(via) = peer.via {
        span.record("via", tracing::field::display(via));
    }
    let Some(permit) = permit else {
        warn!("refused: connection limit reached");
        ctx.metrics.refused("busy");
        let busy = "the server is at its connection limit; try again later";
        refuse(stream, ctx.config.mode, ErrorCode::ServerBusy, busy).await;
        return;
    };
    let slot = match ctx.sources.admit(peer.ip()) {
        Ok(slot) => slot,
        Err(over) => {
            drop(permit);
            warn!(limit = ?over, "refused: too many connections from this address");
            ctx.metrics.refused("per_ip");
            let message = match over {
                OverLimit::Connections => "this address has too many connections open; close some",
                OverLimit::Handshakes => {
                    "this address has too many connections logging in at once; try again later"
                }
            };
            refuse(
                stream,
                ctx.config.mode,
                ErrorCode::TooManyConnections,
                message,
            )
            .await;
            return;
        }
    };
    let secure = stream.is_tls();
    let session = Session::new(stream, peer, secure, id, ctx, shutdown, slot);
    if let Some(stream) = session.run(deadline, permit).await {
        close_gracefully(stream).await;
    }
}

/// Failed accepts come in floods (out of file descriptors while a burst of
/// extra clients is being told `server_busy`): one log line per
/// [`ACCEPT_LOG_INTERVAL`], saying how many were not logged.
#[derive(Debug, Default)]
struct AcceptFailures {
    last_logged: Option<Instant>,
    unlogged: u64,
}

/// Shortest time between two "accept failed" log lines.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl AcceptFailures {
    fn log(&mut self, err: &std::io::Error) {
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|last| now.duration_since(last) < ACCEPT_LOG_INTERVAL)
        {
            self.unlogged += 1;
            return;
        }
        error!(error = %err, since_last_line = self.unlogged, "accept failed");
        self.last_logged = Some(now);
        self.unlogged = 0;
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
async fn trim_memory(stats: Arc<Metrics>, shutdown: CancellationToken) {
    let mut closed_at_last_trim = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = sleep(TRIM_INTERVAL) => {}
        }
        let closed = stats.connections_total() - stats.connections_now();
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

/// Tells a client it cannot be served (`hello`, then a fatal `code`) at
/// once instead of leaving it waiting in the backlog.
async fn refuse(mut stream: Stream, mode: Mode, code: ErrorCode, message: &str) {
    let refusal = ServerMsg::error(code, message, true);
    let tell = async {
        stream.send_msg(&hello(mode)).await?;
        stream.send_msg(&refusal).await
    };
    if let Ok(Ok(())) = timeout(REFUSE_TIMEOUT, tell).await {
        close_gracefully(stream).await;
    }
}
