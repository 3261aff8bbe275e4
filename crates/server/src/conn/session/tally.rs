//! What one connection adds to the server's metrics: bytes read and
//! written, counted by [`Counting`] where they cross the socket, and the
//! messages and replies its session counts. [`Tally::publish`] adds what is
//! new to the shared counters; the wire calls it before it waits for the
//! network and when the connection ends, never per message.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::ops::metrics::Metrics;

/// A stream that counts the bytes read from and written to it.
#[derive(Debug)]
pub(crate) struct Counting<T> {
    inner: T,
    read: u64,
    written: u64,
}

/// What one connection did, for its last log line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Totals {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub messages: u64,
}

/// Messages and replies counted, and how much of everything was published.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub messages: u64,
    pub replies: u64,
    published: [u64; 4],
}

impl<T> Counting<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            read: 0,
            written: 0,
        }
    }

    pub(crate) fn into_inner(self) -> T {
        self.inner
    }

    /// Bytes read so far.
    pub(crate) fn read(&self) -> u64 {
        self.read
    }

    /// Bytes written so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }
}

impl Tally {
    /// Adds to `metrics` what was counted since the last call.
    pub(crate) fn publish<T>(&mut self, stream: &Counting<T>, metrics: &Metrics) {
        let now = [stream.read, stream.written, self.messages, self.replies];
        let counters = [
            &metrics.bytes_received,
            &metrics.bytes_sent,
            &metrics.messages,
            &metrics.replies,
        ];
        for ((counter, now), published) in counters.iter().zip(now).zip(&mut self.published) {
            if now > *published {
                counter.inc_by(now - *published);
                *published = now;
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counting<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counting<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.written += n as u64;
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.written += n as u64;
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
