//! Frame I/O for one connection over any stream (TCP, TLS, an in-memory
//! duplex in tests): reading frames against a deadline and the stop token
//! here; queueing replies so that pipelined input is answered in one
//! write, and bounding every write that has to wait, in `wire/write.rs`;
//! a fast-path reply in one vectored write in `wire/direct.rs`. It knows
//! nothing of the store or of authentication.

use std::{
    pin::Pin,
    sync::{Arc, atomic::AtomicBool},
    task::{Context, Poll},
    time::Duration,
};

use bytes::BytesMut;
use echo_proto::{ClientMsg, FrameCodec, MAX_FRAME_LENGTH, ProtoError, ServerMsg, decode_message};
use futures_util::StreamExt;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::{Instant, Sleep, sleep_until},
};
use tokio_util::{
    codec::Framed,
    sync::{CancellationToken, WaitForCancellationFutureOwned},
};
use tracing::{debug, warn};

use super::{
    ending::Ending,
    tally::{Counting, Tally},
};
use crate::{
    conn::transport::{looks_like_proxy_header, looks_like_tls_record},
    live::clients::ClientEntry,
    live::sessions::{StopReason, Stopper},
    ops::logging::{MAX_LOGGED_ERROR, shown_max},
    ops::metrics::Metrics,
};

pub(crate) use write::OutputLimits;

/// Time allowed for the last frame of a connection (`bye` or a fatal
/// `error`).
pub(crate) const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// Size of the read buffer a connection takes for a read: a burst of large
/// messages is taken in one read, not eight. It is held only while there is
/// something to read ([`spare`]): a connection waiting for its next frame
/// holds none.
const READ_BUFFER: usize = 64 * 1024;

/// A connection's frames.
pub(crate) struct Wire<T> {
    framed: Framed<Counting<T>, FrameCodec>,
    /// What this connection adds to the metrics.
    pub(crate) tally: Tally,
    metrics: Arc<Metrics>,
    /// Where `echo-server clients` reads this connection's message count.
    listed: Option<Arc<ClientEntry>>,
    /// Most bytes of output held for the client (`max_output_buffer`).
    max_output: usize,
    /// Fires at shutdown, and once [`Wire::end_when`] is called, when the
    /// connection is stopped from outside (revoked, kicked) too: one token
    /// for both (the stopper's, a child of the connection's own shutdown
    /// token), created once and polled by every wait.
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Why the connection was stopped, when it was from outside.
    stopper: Option<Stopper>,
    /// The one timer every wait for input races, moved to each wait's
    /// deadline: moving a timer later is one atomic store, where a new timer
    /// per wait is an insertion into the timer wheel and a removal.
    deadline: Pin<Box<Sleep>>,
    write_timeout: Duration,
    /// Set when a new process took the port over: from then on the stop
    /// token ends only the wait for the next frame, not a write that waits
    /// for the client, so what the client sent is answered in full (within
    /// `write_timeout`) before `bye {restart}`.
    finish_writes: Option<Arc<AtomicBool>>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Wire<T> {
    /// Frames over `stream`, reading at most `max_frame` bytes a frame
    /// until [`Wire::set_max_frame`] says otherwise.
    /// Output is written out whenever more than [`READ_BUFFER`] bytes of it
    /// are held (Framed's backpressure boundary: a feed waits for the client
    /// to take them, bounded by `write_timeout`), so a client that does not
    /// read holds at most that plus one reply; a reply that would take the
    /// output held past `max_output` ends the connection.
    pub(crate) fn new(
        stream: T,
        shutdown: CancellationToken,
        max_frame: usize,
        limits: OutputLimits,
        metrics: Arc<Metrics>,
    ) -> Self {
        let codec = FrameCodec::with_limits(max_frame, MAX_FRAME_LENGTH);
        let OutputLimits {
            write_timeout,
            max_output,
        } = limits;
        // No buffer to begin with: each is taken when there is something
        // to read or write, and let go when idle (#30).
        let mut framed = Framed::with_capacity(Counting::new(stream), codec, 0);
        framed.set_backpressure_boundary(READ_BUFFER);
        Self {
            framed,
            tally: Tally::default(),
            metrics,
            listed: None,
            max_output,
            stop: Box::pin(shutdown.cancelled_owned()),
            stopper: None,
            deadline: Box::pin(sleep_until(Instant::now() + Duration::from_secs(86_400))),
            write_timeout,
            finish_writes: None,
        }
    }

    /// Writes that wait are not cut by the stop token once `restarting` is
    /// set (see the field).
    pub(crate) fn finish_writes_when(&mut self, restarting: Arc<AtomicBool>) {
        self.finish_writes = Some(restarting);
    }

    /// From now on, waiting for input (and for the client to take output)
    /// also ends when `stopper` stops the connection ([`Ending::Revoked`],
    /// [`Ending::Kicked`]). The stopper is made [`Stopper::within`] this
    /// wire's shutdown token, so that waiting on it is waiting on both.
    pub(crate) fn end_when(&mut self, stopper: Stopper) {
        self.stop = Box::pin(stopper.token().cancelled_owned());
        self.stopper = Some(stopper);
    }

    /// Why the stop token fired: a reason given from outside, or shutdown.
    fn stopped(&self) -> Ending {
        match self.stopper.as_ref().and_then(Stopper::reason) {
            Some(StopReason::Kicked) => Ending::Kicked,
            Some(StopReason::Revoked(cause)) => Ending::Revoked(cause),
            None => Ending::Shutdown,
        }
    }

    /// Changes the output limits (a reload's, from the next message on).
    pub(crate) fn set_output_limits(&mut self, limits: OutputLimits) {
        self.write_timeout = limits.write_timeout;
        self.max_output = limits.max_output;
    }

    /// Changes the largest frame read (raised once a client is trusted).
    pub(crate) fn set_max_frame(&mut self, max_frame: usize) {
        self.framed.codec_mut().set_max_frame_length(max_frame);
    }

    /// Reads the next message, racing shutdown and `deadline`. A payload
    /// that is not a valid message gets a non-fatal `error` and the wait
    /// goes on; anything that breaks the stream ends the connection.
    pub(crate) async fn recv(&mut self, deadline: Instant) -> Result<ClientMsg, Ending> {
        loop {
            let payload = self.next_frame(deadline).await?;
            if let Some(msg) = self.decode(&payload).await? {
                return Ok(msg);
            }
        }
    }

    /// Parses a payload; a bad one is answered with a non-fatal `error`.
    pub(crate) async fn decode(&mut self, payload: &[u8]) -> Result<Option<ClientMsg>, Ending> {
        match decode_message::<ClientMsg>(payload) {
            Ok(msg) => {
                debug!(kind = echo_proto::Message::kind(&msg), "received");
                Ok(Some(msg))
            }
            Err(err) => {
                let error = err.to_string();
                warn!(error = %shown_max(&error, MAX_LOGGED_ERROR), "bad request");
                // Boxed: rare, and the future of every wait for a message
                // would otherwise be as large as this write (#30).
                Box::pin(self.send(ServerMsg::error(err.code(), err.to_string(), false))).await?;
                Ok(None)
            }
        }
    }

    /// The next frame. One already received (the client sends several
    /// before reading) is taken at once, and the replies written so far stay
    /// buffered, to leave in one write; only before waiting for the network
    /// are they flushed. The wait races shutdown and `deadline`.
    pub(crate) async fn next_frame(&mut self, deadline: Instant) -> Result<BytesMut, Ending> {
        let ready = std::future::poll_fn(|cx| Poll::Ready(self.poll_frame(cx))).await;
        let frame = match ready {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                // The client's line first: a client that has read its reply
                // may ask `echo-server clients` before the flush returns.
                self.list_counts();
                let waited = self.flush_waiting().await?;
                self.release_write_buffer();
                self.publish();
                self.deadline.as_mut().reset(deadline);
                self.wait_for_frame(waited).await?
            }
        };
        match frame {
            None => Err(Ending::ClientLeft),
            Some(Ok(payload)) => Ok(payload),
            Some(Err(ProtoError::Io(err))) => Err(Ending::Lost(err)),
            Some(Err(ProtoError::FrameTooLarge { len, .. })) if looks_like_proxy_header(len) => {
                Err(Ending::UntrustedProxy)
            }
            Some(Err(ProtoError::FrameTooLarge { len, .. })) if looks_like_tls_record(len) => {
                Err(Ending::TlsOnPlainPort)
            }
            Some(Err(err)) => Err(Ending::Violation {
                code: err.code(),
                message: err.to_string(),
            }),
        }
    }

    /// Waits for a frame, racing the stop token and the deadline. A frame
    /// that is there is taken first, without looking at the other two; the
    /// exception is the very first poll when `read_again` is false: the read
    /// just before found nothing and the task has not given way since, so
    /// the stream's wakeup is still registered and reading again would only
    /// repeat that read (with the two polls saved below: 0.9 K of 12.6 K
    /// instructions per 64 B message over TLS, measured with callgrind). A
    /// connection stopped while frames keep coming is stopped at the next
    /// wait that finds none.
    async fn wait_for_frame(
        &mut self,
        read_again: bool,
    ) -> Result<Option<Result<BytesMut, ProtoError>>, Ending> {
        let mut read = read_again;
        std::future::poll_fn(|cx| {
            if read && let Poll::Ready(frame) = self.poll_frame(cx) {
                return Poll::Ready(Ok(frame));
            }
            read = true;
            if self.stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(self.stopped()));
            }
            if self.deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(Ending::Timeout));
            }
            Poll::Pending
        })
        .await
    }

    /// Polls for the next frame with a read buffer taken for the read
    /// ([`spare::take`]); when the read finds nothing and the buffer holds
    /// no part of a frame, the buffer is given back, so a connection
    /// waiting for its next frame holds none, and the next read starts at
    /// the front of a buffer again.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<BytesMut, ProtoError>>> {
        let buffer = self.framed.read_buffer_mut();
        if buffer.capacity() == 0 {
            *buffer = spare::take(READ_BUFFER);
        }
        let polled = self.framed.poll_next_unpin(cx);
        let buffer = self.framed.read_buffer_mut();
        if polled.is_pending() && buffer.is_empty() {
            spare::give_back(std::mem::take(buffer), READ_BUFFER);
        }
        polled
    }

    /// Frees the write buffer once everything in it is out: replies are
    /// small and rare next to the time a connection waits, so it is
    /// allocated again, for what the next replies need, when they come.
    fn release_write_buffer(&mut self) {
        let buffer = self.framed.write_buffer_mut();
        if buffer.is_empty() {
            *buffer = BytesMut::new();
        }
    }

    /// Bytes of read and write buffer this connection holds (for the tests).
    #[cfg(test)]
    pub(crate) fn buffers_held(&self) -> (usize, usize) {
        let read = self.framed.read_buffer().capacity();
        (read, self.framed.write_buffer().capacity())
    }

    /// Bytes read from the client so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.framed.get_ref().read()
    }

    /// Adds this connection's new counts to the metrics (and to its line
    /// in `echo-server clients`).
    pub(crate) fn publish(&mut self) {
        self.tally.publish(self.framed.get_ref(), &self.metrics);
        self.list_counts();
    }

    /// Shows the messages served so far on this connection's line in
    /// `echo-server clients`.
    fn list_counts(&self) {
        if let Some(entry) = &self.listed {
            entry
                .messages
                .store(self.tally.messages, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Lists this connection's counts in `entry` too; it is stopped by the
    /// entry's stopper (a kick, a revocation).
    pub(crate) fn listed_in(&mut self, entry: Arc<ClientEntry>) {
        self.end_when(entry.stopper().clone());
        self.listed = Some(entry);
    }
}

mod direct;
#[cfg(test)]
mod idle_tests;
mod spare;
#[cfg(test)]
mod tests;
mod write;
