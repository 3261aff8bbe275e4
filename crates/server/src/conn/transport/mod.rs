//! The step between `accept` and the first frame, and the last one after
//! the last frame.
//!
//! An accepted TCP connection becomes the stream the session speaks over
//! and the [`Peer`] it speaks for in two steps, each within a deadline of
//! its own and raced against a stop (shutdown; the listener's, which a
//! handover to a new process does not fire: a client that connected just
//! before it still gets its `hello` and `bye {restart}`, not a cut
//! handshake): [`Acceptor::peer`] reads a trusted
//! balancer's PROXY header (it carries the real client address, so the
//! `Peer` is only known after it), then [`Acceptor::secure`] makes the TLS
//! handshake on a TLS port (`tls.rs`: the prepared [`Stream`] is an enum of
//! plain and TLS, matched per poll). The listener charges the connection to
//! its source before either step, and moves the charge to the client a
//! header names between the two. Everything above works on any
//! `AsyncRead + AsyncWrite + Unpin + Send` stream.

mod proxy;
mod tls;

use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use proxy::ProxyError;
pub(crate) use proxy::looks_like_proxy_header;
use tls::TlsStepError;
pub(crate) use tls::{Stream, looks_like_tls_record};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    time::{Instant, sleep_until, timeout},
};
use tracing::warn;

use crate::config::Settings;
use crate::conn::certs::ServerTls;
use crate::sys::peer::Peer;

/// Most bytes read and thrown away while waiting for the client to close.
const LINGER_MAX_BYTES: usize = 64 * 1024;
/// Time allowed for the client to close its side after our last frame.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);
/// Time a trusted balancer has to send its PROXY header: it writes it with
/// the connection, so a balancer that has not is broken or not a balancer.
pub(crate) const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Prepares accepted connections: reads the PROXY header of a trusted
/// balancer's, then makes the TLS handshake on a TLS port. Each step has a
/// deadline of its own within the handshake's.
#[derive(Debug)]
pub(crate) struct Acceptor {
    /// The settings in force: `proxy_protocol_from` (who sends a PROXY
    /// header) and `tls_handshake_timeout`, read per connection.
    settings: Settings,
    /// The TLS identity, on a TLS port.
    tls: Option<Arc<ServerTls>>,
}

/// Why a connection was dropped before its first frame.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// The step's deadline passed.
    #[error("timed out before the first frame")]
    Timeout,
    /// The server began shutting down (`stop` fired).
    #[error("server shutting down")]
    Shutdown,
    /// The connection failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A trusted balancer's PROXY header was missing or malformed.
    #[error("{0}")]
    Proxy(#[from] ProxyError),
    /// The client did not speak TLS to a TLS port, or its handshake failed.
    #[error("{0}")]
    Tls(#[from] TlsStepError),
}

impl TransportError {
    /// Whether an operator should hear of it (a balancer misbehaving), not
    /// just a client going away.
    pub(crate) fn is_notable(&self) -> bool {
        matches!(self, TransportError::Proxy(_) | TransportError::Tls(_))
    }
}

impl Acceptor {
    /// An acceptor that expects a PROXY header from the balancers the
    /// settings name (`proxy_protocol_from`), and on a TLS port gives the
    /// TLS handshake `tls_handshake_timeout`.
    pub(crate) fn new(settings: Settings, tls: Option<Arc<ServerTls>>) -> Self {
        Self { settings, tls }
    }

    /// Whether connections from `ip` start with a PROXY header, as the
    /// settings say now: asked once per connection, at accept, and the
    /// answer kept (a reload does not change a connection's first step).
    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        let settings = self.settings.now();
        let proxies = &settings.listen.proxy_protocol_from;
        proxies.iter().any(|net| net.contains(&ip))
    }

    /// Whether the port speaks TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The PROXY step: who `tcp`, accepted from `addr`, speaks for. A
    /// `trusted` balancer ([`Acceptor::trusts`]) has
    /// [`PROXY_HEADER_TIMEOUT`] (within `deadline`) to send its header,
    /// unless `stop` comes first.
    pub(crate) async fn peer(
        &self,
        tcp: &mut TcpStream,
        (addr, trusted): (SocketAddr, bool),
        deadline: Instant,
        stop: impl Future<Output = ()>,
    ) -> Result<Peer, TransportError> {
        if let Err(err) = tcp.set_nodelay(true) {
            warn!(error = %err, "cannot set TCP_NODELAY");
        }
        if !trusted {
            return Ok(Peer::direct(addr));
        }
        let deadline = deadline.min(Instant::now() + PROXY_HEADER_TIMEOUT);
        within(deadline, stop, proxy::read_header(tcp, addr)).await
    }

    /// The TLS step, on a TLS port: the handshake, within
    /// `tls_handshake_timeout` and `deadline`, unless `stop` comes first.
    pub(crate) async fn secure(
        &self,
        tcp: TcpStream,
        deadline: Instant,
        stop: impl Future<Output = ()>,
    ) -> Result<Stream, TransportError> {
        match &self.tls {
            Some(tls) => {
                let limit = self.settings.now().timeouts.tls_handshake;
                let deadline = deadline.min(Instant::now() + limit);
                within(deadline, stop, tls::accept(tls, tcp)).await
            }
            None => Ok(Stream::Plain(tcp)),
        }
    }
}

/// `step`, unless `deadline` passes or `stop` comes first.
async fn within<T, E: Into<TransportError>>(
    deadline: Instant,
    stop: impl Future<Output = ()>,
    step: impl Future<Output = Result<T, E>>,
) -> Result<T, TransportError> {
    tokio::select! {
        biased;
        () = stop => Err(TransportError::Shutdown),
        () = sleep_until(deadline) => Err(TransportError::Timeout),
        done = step => done.map_err(Into::into),
    }
}

/// Closes our side and reads (and drops) what the client still sends until
/// it closes too, for a short while. Closing with unread data makes the
/// kernel send a reset, which can destroy the frames we just wrote.
pub(crate) async fn close_gracefully<T: AsyncRead + AsyncWrite + Unpin>(mut stream: T) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        // On the heap: an array here would be part of every connection
        // task's future for the whole of its life, not only at its end.
        let mut buf = vec![0u8; 4096];
        let mut total = 0;
        while total < LINGER_MAX_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = timeout(LINGER_TIMEOUT, drain).await;
}
