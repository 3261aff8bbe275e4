//! The step between `accept` and the first frame, and the last one after
//! the last frame.
//!
//! [`Acceptor::prepare`] turns an accepted TCP connection into the stream
//! the session speaks over and the [`Peer`] it speaks for, within the
//! handshake deadline and raced against shutdown. This is where a PROXY
//! protocol header is read (it carries the real client address, so the
//! `Peer` is only known after it) and then, on a TLS port, the TLS
//! handshake is made (`tls.rs`: the prepared [`Stream`] is an enum of plain
//! and TLS, matched per poll). Everything above works on any
//! `AsyncRead + AsyncWrite + Unpin + Send` stream.

mod proxy;
mod tls;

use std::{fmt, io, net::SocketAddr, sync::Arc, time::Duration};

use ipnet::IpNet;
use proxy::ProxyError;
pub(crate) use proxy::looks_like_proxy_header;
use tls::TlsStepError;
pub(crate) use tls::{Stream, looks_like_tls_record};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    time::{Instant, sleep_until, timeout},
};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::tls::ServerTls;

/// Most bytes read and thrown away while waiting for the client to close.
const LINGER_MAX_BYTES: usize = 64 * 1024;
/// Time allowed for the client to close its side after our last frame.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection's id in the log and in `/whoami`: 8 hex digits, random,
/// short enough to read and to grep for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId(u32);

/// Who a connection speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The client's address: identification, limits and logs use it.
    pub addr: SocketAddr,
    /// The proxy the connection came through, when a PROXY header named
    /// another client address.
    pub via: Option<SocketAddr>,
}

/// Prepares accepted connections: reads the PROXY header of a trusted
/// balancer's, then makes the TLS handshake on a TLS port.
#[derive(Debug, Default)]
pub(crate) struct Acceptor {
    /// Addresses whose connections start with a PROXY header.
    proxies: Vec<IpNet>,
    /// The TLS identity, on a TLS port.
    tls: Option<Arc<ServerTls>>,
}

/// Why a connection was dropped before its first frame.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// The handshake deadline passed during the transport step.
    #[error("timed out before the first frame")]
    Timeout,
    /// The server began shutting down.
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

impl ConnectionId {
    /// A fresh random id.
    pub fn random() -> Self {
        // The low bits of a v4 UUID are random.
        Self(uuid::Uuid::new_v4().as_u128() as u32)
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl Peer {
    /// A client connected straight to us.
    pub fn direct(addr: SocketAddr) -> Self {
        Self { addr, via: None }
    }

    /// The client's IP address.
    pub fn ip(&self) -> std::net::IpAddr {
        self.addr.ip()
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.via {
            None => write!(f, "{}", self.addr),
            Some(via) => write!(f, "{} via {via}", self.addr),
        }
    }
}

impl Acceptor {
    /// An acceptor that expects a PROXY header from the balancers in
    /// `proxies` (`proxy_protocol_from`).
    pub(crate) fn new(proxies: Vec<IpNet>, tls: Option<Arc<ServerTls>>) -> Self {
        Self { proxies, tls }
    }

    /// Prepares `tcp`, accepted from `addr`, by `deadline`.
    pub(crate) async fn prepare(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
        deadline: Instant,
        shutdown: &CancellationToken,
    ) -> Result<(Stream, Peer), TransportError> {
        if let Err(err) = tcp.set_nodelay(true) {
            warn!(error = %err, "cannot set TCP_NODELAY");
        }
        let trusted = self.proxies.iter().any(|net| net.contains(&addr.ip()));
        let steps = async move {
            let mut tcp = tcp;
            let peer = if trusted {
                proxy::read_header(&mut tcp, addr).await?
            } else {
                Peer::direct(addr)
            };
            let stream = match &self.tls {
                Some(tls) => tls::accept(tls, tcp).await?,
                None => Stream::Plain(tcp),
            };
            Ok::<_, TransportError>((stream, peer))
        };
        tokio::select! {
            biased;
            () = shutdown.cancelled() => Err(TransportError::Shutdown),
            () = sleep_until(deadline) => Err(TransportError::Timeout),
            prepared = steps => prepared,
        }
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
        let mut buf = [0u8; 4096];
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
