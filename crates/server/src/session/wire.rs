//! Frame I/O for one connection over any stream (TCP, TLS, an in-memory
//! duplex in tests): reading frames against a deadline and the shutdown
//! signal, queueing replies so that pipelined input is answered in one
//! write, and bounding every write that has to wait. It knows nothing of
//! the store or of authentication.

use std::{
    pin::{Pin, pin},
    sync::Arc,
    task::Poll,
    time::Duration,
};

use bytes::BytesMut;
use echo_proto::{
    ClientMsg, FrameCodec, Json, MAX_FRAME_LENGTH, ProtoError, ServerMsg, decode_message,
    fast::TextReply,
};
use futures_util::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::{Instant, Sleep, sleep_until, timeout},
};
use tokio_util::{
    codec::{Encoder, Framed},
    sync::{CancellationToken, WaitForCancellationFutureOwned},
};
use tracing::{debug, warn};

use super::{
    ending::Ending,
    tally::{Counting, Tally, Totals},
};
use crate::{
    clients::ClientEntry,
    live::{StopReason, Stopper},
    logging::{MAX_LOGGED_ERROR, shown_max},
    metrics::Metrics,
    transport::{looks_like_proxy_header, looks_like_tls_record},
};

/// Time allowed for the last frame of a connection (`bye` or a fatal
/// `error`).
pub(crate) const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// Initial size of a connection's read buffer: a burst of large messages is
/// taken in one read, not eight. Pages a connection never fills are never
/// touched, so they cost an idle connection no memory (measured: the same
/// 15.3 KiB of RSS per idle connection as with Framed's 8 KiB default).
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
        Self {
            framed: Framed::with_capacity(Counting::new(stream), codec, READ_BUFFER),
            tally: Tally::default(),
            metrics,
            listed: None,
            max_output,
            stop: Box::pin(shutdown.cancelled_owned()),
            stopper: None,
            deadline: Box::pin(sleep_until(Instant::now() + Duration::from_secs(86_400))),
            write_timeout,
        }
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
            Some(StopReason::Revoked) => Ending::Revoked,
            None => Ending::Shutdown,
        }
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
                self.send(ServerMsg::error(err.code(), err.to_string(), false))
                    .await?;
                Ok(None)
            }
        }
    }

    /// The next frame. One already received (the client sends several
    /// before reading) is taken at once, and the replies written so far stay
    /// buffered, to leave in one write; only before waiting for the network
    /// are they flushed. The wait races shutdown and `deadline`.
    pub(crate) async fn next_frame(&mut self, deadline: Instant) -> Result<BytesMut, Ending> {
        let framed = &mut self.framed;
        let ready = std::future::poll_fn(|cx| Poll::Ready(framed.poll_next_unpin(cx))).await;
        let frame = match ready {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                self.rewind_read_buffer();
                // The client's line first: a client that has read its reply
                // may ask `echo-server clients` before the flush returns.
                self.list_counts();
                self.flush().await?;
                self.publish();
                self.deadline.as_mut().reset(deadline);
                tokio::select! {
                    biased;
                    () = self.stop.as_mut() => return Err(self.stopped()),
                    () = self.deadline.as_mut() => return Err(Ending::Timeout),
                    frame = self.framed.next() => frame,
                }
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

    /// With nothing of the next frame read yet, the next read starts at the
    /// front of the read buffer again (free when the buffer holds nothing
    /// and no frame still shares it). Otherwise reads walk through all
    /// [`READ_BUFFER`] bytes before coming back, and the frame that reaches
    /// the end is copied to a fresh buffer on the way.
    fn rewind_read_buffer(&mut self) {
        let buffer = self.framed.read_buffer_mut();
        if buffer.is_empty() {
            buffer.reserve(READ_BUFFER);
        }
    }

    /// Queues one message; see [`Wire::feed`].
    pub(crate) async fn send(&mut self, msg: ServerMsg) -> Result<(), Ending> {
        self.feed([Json(msg)]).await
    }

    /// Queues one `reply` per text, the last one marked `last`. The texts
    /// are taken one at a time, as the write buffer drains, and encoded
    /// from where they are (no copy per reply).
    pub(crate) async fn send_replies<S: AsRef<str>>(
        &mut self,
        re: u64,
        texts: impl IntoIterator<Item = S>,
    ) -> Result<(), Ending> {
        let mut texts = texts.into_iter().peekable();
        while let Some(text) = texts.next() {
            let last = texts.peek().is_none();
            let text = text.as_ref();
            self.feed([Json(TextReply { re, text, last })]).await?;
            self.tally.replies += 1;
        }
        Ok(())
    }

    /// Queues messages for the client. They leave at the next flush (before
    /// the connection waits for input), or earlier when the buffer passes
    /// its backpressure boundary, so a long burst does not pile up in memory.
    pub(crate) async fn feed<M>(&mut self, msgs: impl IntoIterator<Item = M>) -> Result<(), Ending>
    where
        FrameCodec: Encoder<M, Error = ProtoError>,
    {
        let limit = self.write_timeout;
        let max_output = self.max_output;
        let framed = &mut self.framed;
        let write = async move {
            for msg in msgs {
                framed.feed(msg).await?;
                if let Err(over) = within(framed.write_buffer().len(), max_output) {
                    return Ok(Err(over));
                }
            }
            Ok(Ok(()))
        };
        let written = bounded(write, limit, self.stop.as_mut()).await;
        match written.map_err(|cut| cut.ending(self))? {
            Ok(queued) => queued,
            Err(ProtoError::Io(err)) => Err(Ending::Lost(err)),
            Err(err) => {
                // Only an encoding error is left: a reply over the frame cap.
                // The buffer holds no partial frame, so say so and go on.
                warn!(error = %err, "reply not sent");
                let msg = ServerMsg::error(err.code(), err.to_string(), false);
                let error = SinkExt::<Json<&ServerMsg>>::feed(&mut self.framed, Json(&msg));
                let sent = bounded(error, limit, self.stop.as_mut()).await;
                match sent.map_err(|cut| cut.ending(self))? {
                    Ok(()) => Ok(()),
                    Err(_) => Err(Ending::WriteTimedOut),
                }
            }
        }
    }

    /// Writes out everything queued.
    pub(crate) async fn flush(&mut self) -> Result<(), Ending> {
        let limit = self.write_timeout;
        let flush = SinkExt::<Json<&ServerMsg>>::flush(&mut self.framed);
        let flushed = bounded(flush, limit, self.stop.as_mut()).await;
        match flushed.map_err(|cut| cut.ending(self))? {
            Ok(()) => Ok(()),
            Err(ProtoError::Io(err)) => Err(Ending::Lost(err)),
            Err(_) => Err(Ending::WriteTimedOut),
        }
    }

    /// Sends `last` (if any) with everything still queued, within
    /// [`FAREWELL_TIMEOUT`] (with no `last`, what is queued only when
    /// `graceful`), and gives the stream back for closing.
    pub(crate) async fn finish(mut self, last: Option<ServerMsg>, graceful: bool) -> (T, Totals) {
        match last {
            Some(msg) => {
                let _ = timeout(FAREWELL_TIMEOUT, self.framed.send(Json(&msg))).await;
            }
            None if graceful => {
                let flush = SinkExt::<Json<&ServerMsg>>::flush(&mut self.framed);
                let _ = timeout(FAREWELL_TIMEOUT, flush).await;
            }
            None => {}
        }
        self.publish();
        let counted = self.framed.into_inner();
        let totals = Totals {
            bytes_in: counted.read(),
            bytes_out: counted.written(),
            messages: self.tally.messages,
        };
        (counted.into_inner(), totals)
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

/// How much output a connection may hold, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutputLimits {
    /// Time a write may wait for the client to take output.
    pub write_timeout: Duration,
    /// Most bytes of output held for the client.
    pub max_output: usize,
}

/// Whether `held` bytes of output are within `max_output`.
fn within(held: usize, max_output: usize) -> Result<(), Ending> {
    if held > max_output {
        return Err(Ending::OutputOverLimit { held, max_output });
    }
    Ok(())
}

/// Why a write that had to wait was cut short.
enum Cut {
    /// The connection was stopped (see [`Wire::stopped`]).
    Stopped,
    /// The client took nothing for `write_timeout`.
    TimedOut,
}

impl Cut {
    fn ending<T: AsyncRead + AsyncWrite + Unpin>(self, wire: &Wire<T>) -> Ending {
        match self {
            Cut::Stopped => wire.stopped(),
            Cut::TimedOut => Ending::WriteTimedOut,
        }
    }
}

/// Runs a write. It almost always completes at its first poll, and then
/// costs no timer; only a write that has to wait (the client is not reading)
/// is bounded by `limit` and raced against the connection's stop token.
async fn bounded<T>(
    write: impl Future<Output = T>,
    limit: Duration,
    stop: Pin<&mut WaitForCancellationFutureOwned>,
) -> Result<T, Cut> {
    let mut write = pin!(write);
    if let Poll::Ready(done) = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await
    {
        return Ok(done);
    }
    tokio::select! {
        biased;
        () = stop => Err(Cut::Stopped),
        done = timeout(limit, write) => done.map_err(|_| Cut::TimedOut),
    }
}

mod direct;
#[cfg(test)]
mod tests;
