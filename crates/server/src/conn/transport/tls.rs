//! The TLS step of the transport, and the stream it leaves: plain TCP or
//! TLS over TCP, matched per poll.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
    time::timeout,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use crate::conn::certs::ServerTls;

/// The first byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE: u8 = 0x16;
/// How long a TLS port waits for the client's first byte. A TLS client
/// speaks first (its ClientHello), at once; an echo-server client waits for
/// `hello`, so silence means a plain client.
const FIRST_BYTE_WAIT: Duration = Duration::from_secs(1);
/// A TLS alert record (TLS 1.2 framing, fatal, `unexpected_message`): what
/// a TLS port answers a plain client with. A plain echo-client reads it as
/// a frame header it recognises and says the server speaks TLS.
const ALERT_UNEXPECTED_MESSAGE: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x0a];

/// Most bytes a client may send before its TLS handshake is over. A
/// ClientHello is a few hundred bytes (some 2 KiB with post-quantum key
/// shares); rustls would buffer one of up to 64 KiB, which a flood of
/// unfinished handshakes would hold for every admitted connection.
pub(crate) const MAX_HANDSHAKE_BYTES: usize = 16 * 1024;

/// The stream a session speaks over once the transport is prepared.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: rustls's connection state is large).
    Tls(Box<TlsStream<Capped>>),
}

/// A TCP stream that lets at most a number of bytes be read until the cap
/// is lifted (once the TLS handshake is over).
#[derive(Debug)]
pub(crate) struct Capped {
    tcp: TcpStream,
    left: Option<usize>,
}

/// Why the TLS step failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsStepError {
    /// The client did not start a TLS handshake.
    #[error("not a TLS client")]
    NotTls,
    /// The handshake failed.
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
}

/// Whether a frame header announcing `announced_len` bytes is the start of
/// a TLS record (a ClientHello sent to a plain port reads as a frame of
/// some 369 MB).
pub(crate) fn looks_like_tls_record(announced_len: usize) -> bool {
    // The record type, then the major version (3) of every TLS and SSL 3.
    announced_len >> 16 == 0x1603
}

/// Makes the TLS handshake on `tcp`, after checking the client starts
/// one; a client that does not is sent a TLS alert.
pub(crate) async fn accept(tls: &ServerTls, mut tcp: TcpStream) -> Result<Stream, TlsStepError> {
    let mut first = [0u8; 1];
    let starts_tls = matches!(
        timeout(FIRST_BYTE_WAIT, tcp.peek(&mut first)).await,
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE
    );
    if !starts_tls {
        // Best effort: the client may be gone already.
        let _ = timeout(FIRST_BYTE_WAIT, tcp.write_all(&ALERT_UNEXPECTED_MESSAGE)).await;
        return Err(TlsStepError::NotTls);
    }
    let capped = Capped {
        tcp,
        left: Some(MAX_HANDSHAKE_BYTES),
    };
    let mut stream = TlsAcceptor::from(tls.config())
        .accept(capped)
        .await
        .map_err(TlsStepError::Handshake)?;
    stream.get_mut().0.left = None;
    Ok(Stream::Tls(Box::new(stream)))
}

impl AsyncRead for Capped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(left) = this.left else {
            return Pin::new(&mut this.tcp).poll_read(cx, buf);
        };
        if left == 0 {
            let too_long = format!("the client sent over {MAX_HANDSHAKE_BYTES} bytes of handshake");
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, too_long)));
        }
        // Only during the handshake: read into at most `left` bytes of
        // `buf` (initialised first, so that they may be marked filled).
        let room = left.min(buf.remaining());
        let mut within = ReadBuf::new(buf.initialize_unfilled_to(room));
        let polled = Pin::new(&mut this.tcp).poll_read(cx, &mut within);
        let read = within.filled().len();
        buf.advance(read);
        this.left = Some(left - read);
        polled
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

impl Stream {
    /// Whether the connection is encrypted.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn at_most_the_cap_is_read_until_it_is_lifted() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        client.write_all(&[7u8; 3 * 1024]).await.unwrap();
        let mut capped = Capped {
            tcp,
            left: Some(1024),
        };
        let mut buf = vec![0u8; 4096];
        let mut got = 0;
        let err = loop {
            match capped.read(&mut buf).await {
                Ok(n) => got += n,
                Err(err) => break err,
            }
        };
        assert_eq!(got, 1024);
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        capped.left = None;
        capped.read_exact(&mut buf[..2048]).await.unwrap();
        assert!(buf[..2048].iter().all(|b| *b == 7));
    }

    #[test]
    fn a_client_hello_reads_as_a_tls_record() {
        // 16 03 01 02 00: a ClientHello record of 512 bytes.
        assert!(looks_like_tls_record(0x1603_0102));
        assert!(looks_like_tls_record(0x1603_0300));
        assert!(!looks_like_tls_record(64));
        assert!(!looks_like_tls_record(0x1604_0000));
    }
}
