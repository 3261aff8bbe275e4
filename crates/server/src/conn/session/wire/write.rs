//! The write side of a connection's frames: queueing messages so that
//! pipelined input is answered in one write, flushing before a wait, the
//! last frame, and the bounds on every write that has to wait for the
//! client (its time, the output held, the connection's stop token).

use std::{
    pin::Pin,
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::Poll,
    time::Duration,
};

use echo_proto::{FrameCodec, Json, ProtoError, ServerMsg, fast::TextReply};
use futures_util::SinkExt;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::{sleep, timeout},
};
use tokio_util::{codec::Encoder, sync::WaitForCancellationFutureOwned};
use tracing::warn;

use super::{FAREWELL_TIMEOUT, Wire};
use crate::{
    config::ServerConfig,
    conn::session::{ending::Ending, tally::Totals},
};

impl<T: AsyncRead + AsyncWrite + Unpin> Wire<T> {
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
        // In a block of its own, so that the write's state is let go
        // before what follows: a future keeps room for every value that
        // may still be borrowed, and it is part of the connection's task
        // for as long as the connection lives (#30).
        let written = {
            let framed = &mut self.framed;
            let write = pin!(async move {
                for msg in msgs {
                    framed.feed(msg).await?;
                    if let Err(over) = within(framed.write_buffer().len(), max_output) {
                        return Ok(Err(over));
                    }
                }
                Ok(Ok(()))
            });
            let stop = self.stop.as_mut();
            bounded(write, limit, stop, finishing(&self.finish_writes)).await
        };
        match written.map_err(|cut| cut.ending(self))?.0 {
            Ok(queued) => queued,
            Err(ProtoError::Io(err)) => Err(Ending::Lost(err)),
            // Only an encoding error is left: a reply over the frame cap.
            // Rare, so its own write is boxed.
            Err(err) => Box::pin(self.not_sent(err)).await,
        }
    }

    /// Says that a reply was not sent (over the frame cap). The buffer
    /// holds no partial frame, so the connection goes on.
    async fn not_sent(&mut self, err: ProtoError) -> Result<(), Ending> {
        warn!(error = %err, "reply not sent");
        let msg = ServerMsg::error(err.code(), err.to_string(), false);
        let error = SinkExt::<Json<&ServerMsg>>::feed(&mut self.framed, Json(&msg));
        let sent = bounded(
            pin!(error),
            self.write_timeout,
            self.stop.as_mut(),
            finishing(&self.finish_writes),
        )
        .await;
        match sent.map_err(|cut| cut.ending(self))?.0 {
            Ok(()) => Ok(()),
            Err(_) => Err(Ending::WriteTimedOut),
        }
    }

    /// Writes out everything queued.
    pub(crate) async fn flush(&mut self) -> Result<(), Ending> {
        self.flush_waiting().await.map(|_waited| ())
    }

    /// Writes out everything queued, and says whether that had to wait for
    /// the client (the task then gave way, and a wakeup meant for the read
    /// side may have been taken on the way).
    pub(super) async fn flush_waiting(&mut self) -> Result<bool, Ending> {
        let limit = self.write_timeout;
        let flush = SinkExt::<Json<&ServerMsg>>::flush(&mut self.framed);
        let flushed = bounded(
            pin!(flush),
            limit,
            self.stop.as_mut(),
            finishing(&self.finish_writes),
        )
        .await;
        match flushed.map_err(|cut| cut.ending(self))? {
            (Ok(()), waited) => Ok(waited),
            (Err(ProtoError::Io(err)), _) => Err(Ending::Lost(err)),
            (Err(_), _) => Err(Ending::WriteTimedOut),
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
}

/// How much output a connection may hold, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutputLimits {
    /// Time a write may wait for the client to take output.
    pub write_timeout: Duration,
    /// Most bytes of output held for the client.
    pub max_output: usize,
}

impl OutputLimits {
    /// The limits `config` sets (`write_timeout`, `max_output_buffer`).
    pub(crate) fn of(config: &ServerConfig) -> Self {
        Self {
            write_timeout: config.timeouts.write,
            max_output: config.limits.max_output_buffer,
        }
    }
}

/// Whether `held` bytes of output are within `max_output`.
pub(super) fn within(held: usize, max_output: usize) -> Result<(), Ending> {
    if held > max_output {
        return Err(Ending::OutputOverLimit { held, max_output });
    }
    Ok(())
}

/// Whether writes are to be finished whatever the stop token says: the
/// server is handing over to a new process ([`Wire::finish_writes_when`]).
fn finishing(finish_writes: &Option<Arc<AtomicBool>>) -> impl Fn() -> bool + '_ {
    move || {
        finish_writes
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Acquire))
    }
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

/// Runs a write, and says whether it had to wait. It almost always
/// completes at its first poll, and then costs no timer; only a write that
/// has to wait (the client is not reading) is bounded by `limit` and raced
/// against the connection's stop token; once `finishing` says so (the
/// server hands over, and sets it before the token fires), the stop token
/// no longer cuts it, even one that was waiting already.
///
/// The write comes pinned where its caller made it: moved in, it would
/// take room twice in the connection's task (#30).
async fn bounded<T>(
    mut write: Pin<&mut impl Future<Output = T>>,
    limit: Duration,
    stop: Pin<&mut WaitForCancellationFutureOwned>,
    finishing: impl Fn() -> bool,
) -> Result<(T, bool), Cut> {
    if let Poll::Ready(done) = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await
    {
        return Ok((done, false));
    }
    // The timer only now, and on the heap: a write future is part of the
    // connection's task for as long as it lives, waiting or not (#30).
    let mut expiry = Box::pin(sleep(limit));
    tokio::select! {
        biased;
        () = stop => {}
        done = write.as_mut() => return Ok((done, true)),
        () = expiry.as_mut() => return Err(Cut::TimedOut),
    }
    if !finishing() {
        return Err(Cut::Stopped);
    }
    tokio::select! {
        biased;
        done = write => Ok((done, true)),
        () = expiry => Err(Cut::TimedOut),
    }
}
