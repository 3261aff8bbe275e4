//! The accept loop: admits connections up to the limit, spawns one task per
//! connection, and drains them at shutdown.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use echo_proto::{ErrorCode, ext::AsyncFrameWrite};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    time::{sleep, timeout},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{Instrument, error, info, info_span, warn};

use crate::{
    Shared,
    connection::{Connection, close_gracefully, error_msg, hello},
    store::UserStore,
};

/// Pause after a failed `accept` (out of file descriptors, say), so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Time allowed to tell an extra client that the server is busy.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) struct Listener<S> {
    listener: TcpListener,
    shared: Arc<Shared<S>>,
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl<S: UserStore> Listener<S> {
    pub(crate) fn new(
        listener: TcpListener,
        shared: Arc<Shared<S>>,
        shutdown: CancellationToken,
    ) -> Self {
        let limit = Arc::new(Semaphore::new(shared.config.max_connections));
        Self {
            listener,
            shared,
            limit,
            shutdown,
            tasks: TaskTracker::new(),
        }
    }

    /// Accepts until shutdown, then drains.
    pub(crate) async fn serve(self) {
        let trimmer = tokio::spawn(trim_memory(
            Arc::clone(&self.shared.stats),
            self.shutdown.clone(),
        ));
        let local = self.listener.local_addr().ok();
        info!(addr = ?local, mode = ?self.shared.config.mode, "server started");
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
                    error!(error = %err, "accept failed");
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
        drain(&self.tasks, self.shared.config.drain_timeout).await;
        trimmer.abort();
    }

    fn admit(&self, stream: TcpStream, peer: SocketAddr) {
        let id = uuid::Uuid::new_v4();
        let span = info_span!("conn", %id, %peer, user = tracing::field::Empty);
        if let Err(err) = stream.set_nodelay(true) {
            warn!(parent: &span, error = %err, "cannot set TCP_NODELAY");
        }
        match Arc::clone(&self.limit).try_acquire_owned() {
            Ok(permit) => {
                let connection = Connection::new(
                    stream,
                    peer,
                    id,
                    Arc::clone(&self.shared),
                    self.shutdown.child_token(),
                );
                self.tasks.spawn(connection.run(permit).instrument(span));
            }
            Err(_) => {
                let hello = hello(&self.shared);
                self.tasks
                    .spawn(refuse_busy(stream, hello).instrument(span));
            }
        }
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
async fn trim_memory(stats: Arc<crate::stats::Stats>, shutdown: CancellationToken) {
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

/// Tells a client over the connection limit so at once (`hello`, then a fatal
/// `server_busy`) instead of leaving it waiting in the backlog.
async fn refuse_busy(mut stream: TcpStream, hello: echo_proto::ServerMsg) {
    warn!("refused: connection limit reached");
    let busy = error_msg(
        ErrorCode::ServerBusy,
        "the server is at its connection limit; try again later".to_owned(),
        true,
    );
    let tell = async {
        stream.send_msg(&hello).await?;
        stream.send_msg(&busy).await
    };
    if let Ok(Ok(())) = timeout(REFUSE_TIMEOUT, tell).await {
        close_gracefully(stream).await;
    }
}
