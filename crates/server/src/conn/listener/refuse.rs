//! Connections the server cannot take: told so at once on a plain port
//! (`hello`, then a fatal error), closed at once on a TLS port (no TLS work
//! is spent on a connection that will not be served). Either way nothing
//! waits for the client for long, the refusals in flight are bounded, and
//! the log gets one line per [`LOG_INTERVAL`] however many there are.

use std::{sync::Arc, time::Duration};

use echo_proto::{ErrorCode, Mode, ServerMsg, ext::AsyncFrameWrite};
use tokio::{net::TcpStream, sync::Semaphore, time::timeout};
use tracing::{Instrument, warn};

use crate::{
    conn::admission::OverLimit,
    conn::session::hello,
    conn::transport::{Stream, close_gracefully},
    ops::metrics::{Metrics, Refused},
    sys::sync::lock,
};

/// Time allowed to tell an extra client that it cannot be served.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Refusals being told at once; past it, an extra connection is closed
/// without a word (a flood's connections must not pile up in refusals).
/// Their descriptors come out of the spare ones (`daemon::FD_RESERVE`); a
/// flood that uses those up for a moment makes `accept` fail, which the
/// accept loop waits out (one log line per 10 s).
const MAX_REFUSING: usize = 256;
/// Shortest time between two log lines of one kind of refusal.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why a connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_connections`.
    Busy,
    /// A per-source limit.
    Source(OverLimit),
}

/// Refuses connections, a bounded number at a time.
#[derive(Debug)]
pub(crate) struct Refuser {
    mode: Mode,
    tls: bool,
    metrics: Arc<Metrics>,
    telling: Arc<Semaphore>,
    busy_log: std::sync::Mutex<Throttled>,
    source_log: std::sync::Mutex<Throttled>,
}

impl Refusal {
    fn code(self) -> ErrorCode {
        match self {
            Refusal::Busy => ErrorCode::ServerBusy,
            Refusal::Source(_) => ErrorCode::TooManyConnections,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::Busy => "the server is at its connection limit; try again later",
            Refusal::Source(OverLimit::Connections) => {
                "this address has too many connections open; close some"
            }
            Refusal::Source(OverLimit::Handshakes) => {
                "this address has too many connections logging in at once; try again later"
            }
        }
    }

    /// `echo_connections_refused_total`'s reason.
    fn reason(self) -> Refused {
        match self {
            Refusal::Busy => Refused::busy,
            Refusal::Source(_) => Refused::per_ip,
        }
    }
}

impl Refuser {
    /// Refusals for a port in `mode`, TLS or not.
    pub(crate) fn new(mode: Mode, tls: bool, metrics: Arc<Metrics>) -> Self {
        Self {
            mode,
            tls,
            metrics,
            telling: Arc::new(Semaphore::new(MAX_REFUSING)),
            busy_log: std::sync::Mutex::default(),
            source_log: std::sync::Mutex::default(),
        }
    }

    /// Refuses `tcp`: counted, logged (throttled), and on a plain port told
    /// why, in a task of its own, unless too many are being told already.
    pub(crate) fn refuse(&self, tcp: TcpStream, why: Refusal) {
        self.note(why);
        if self.tls {
            return;
        }
        let Ok(permit) = Arc::clone(&self.telling).try_acquire_owned() else {
            return;
        };
        let mode = self.mode;
        let tell = async move {
            tell(Stream::Plain(tcp), mode, why.code(), why.message()).await;
            drop(permit);
        };
        tokio::spawn(tell.in_current_span());
    }

    /// Counts a refusal, and logs it unless a line of its kind was
    /// written less than [`LOG_INTERVAL`] ago.
    fn note(&self, why: Refusal) {
        self.metrics.refused(why.reason());
        let log = match why {
            Refusal::Busy => &self.busy_log,
            Refusal::Source(_) => &self.source_log,
        };
        if let Some(unlogged) = lock(log).tick() {
            match why {
                Refusal::Busy => {
                    warn!(
                        since_last_line = unlogged,
                        "refused: connection limit reached"
                    );
                }
                Refusal::Source(over) => warn!(
                    limit = ?over,
                    since_last_line = unlogged,
                    "refused: too many connections from this address"
                ),
            }
        }
    }

    /// Refuses a connection whose PROXY header named a client over its
    /// limits, in the task the connection runs in (which holds its place
    /// in `max_connections` meanwhile).
    pub(crate) async fn refuse_named(&self, tcp: TcpStream, why: Refusal) {
        self.note(why);
        if !self.tls {
            tell(Stream::Plain(tcp), self.mode, why.code(), why.message()).await;
        }
    }
}

/// Tells a client it cannot be served (`hello`, then a fatal `code`) at
/// once instead of leaving it waiting in the backlog.
async fn tell(mut stream: Stream, mode: Mode, code: ErrorCode, message: &str) {
    let refusal = ServerMsg::error(code, message, true);
    let tell = async {
        stream.send_msg(&hello(mode)).await?;
        stream.send_msg(&refusal).await
    };
    if let Ok(Ok(())) = timeout(REFUSE_TIMEOUT, tell).await {
        close_gracefully(stream).await;
    }
}

/// A log line that comes in floods: at most one per [`LOG_INTERVAL`],
/// saying how many were not written.
#[derive(Debug, Default)]
pub(super) struct Throttled {
    last_logged: Option<tokio::time::Instant>,
    unlogged: u64,
}

impl Throttled {
    /// `Some(not logged since the last line)` when a line is due now.
    pub(super) fn tick(&mut self) -> Option<u64> {
        let now = tokio::time::Instant::now();
        if self
            .last_logged
            .is_some_and(|last| now.duration_since(last) < LOG_INTERVAL)
        {
            self.unlogged += 1;
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}
