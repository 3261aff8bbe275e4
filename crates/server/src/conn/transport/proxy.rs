//! The PROXY protocol (HAProxy's, v1 text and v2 binary): a balancer that
//! the operator trusts (`proxy_protocol_from`) starts each connection with
//! a header naming the real client. The header is read exactly (never a
//! byte of what follows), parsed by the `ppp` crate, and turned into the
//! connection's [`Peer`].

use std::net::SocketAddr;

use ppp::{HeaderResult, v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::sys::peer::Peer;

/// The longest v1 header (the protocol's own limit).
const MAX_V1: usize = 107;
/// The longest v2 header read (addresses and TLVs); HAProxy's are far
/// shorter.
const MAX_V2: usize = 16 + 1024;
/// The first bytes of a v2 header (of its 12-byte signature).
const V2_START: &[u8; 5] = b"\r\n\r\n\0";

/// Why a trusted balancer's connection was dropped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The connection did not start with a PROXY header.
    #[error("a connection from a trusted proxy did not start with a PROXY header")]
    Missing,
    /// The header did not parse.
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads the PROXY header a connection from `balancer` starts with, and
/// returns who the connection is for: the client it names, via the
/// balancer; or the balancer itself for a v2 `LOCAL` (a health check) or
/// a v1 `UNKNOWN`.
pub(crate) async fn read_header<T: AsyncRead + Unpin>(
    stream: &mut T,
    balancer: SocketAddr,
) -> Result<Peer, ProxyError> {
    let mut header = vec![0u8; 5];
    stream.read_exact(&mut header).await?;
    if header == b"PROXY" {
        // v1: a line; read to its end, one byte at a time, so nothing of
        // what follows is taken.
        while !header.ends_with(b"\r\n") {
            if header.len() >= MAX_V1 {
                return Err(ProxyError::Malformed(
                    "a v1 header longer than 107 bytes".into(),
                ));
            }
            header.push(stream.read_u8().await?);
        }
    } else if header == V2_START {
        header.resize(16, 0);
        stream.read_exact(&mut header[5..]).await?;
        let length = usize::from(u16::from_be_bytes([header[14], header[15]]));
        if 16 + length > MAX_V2 {
            return Err(ProxyError::Malformed(format!(
                "a v2 header of {length} bytes"
            )));
        }
        header.resize(16 + length, 0);
        stream.read_exact(&mut header[16..]).await?;
    } else {
        return Err(ProxyError::Missing);
    }
    peer_of(&header, balancer)
}

/// The peer a complete header names.
fn peer_of(header: &[u8], balancer: SocketAddr) -> Result<Peer, ProxyError> {
    let via = |client: SocketAddr| Peer {
        addr: client,
        via: Some(balancer),
    };
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(parsed)) => Ok(match parsed.addresses {
            v1::Addresses::Tcp4(ip) => via(SocketAddr::from((ip.source_address, ip.source_port))),
            v1::Addresses::Tcp6(ip) => via(SocketAddr::from((ip.source_address, ip.source_port))),
            v1::Addresses::Unknown => Peer::direct(balancer),
        }),
        HeaderResult::V2(Ok(parsed)) => Ok(match (parsed.command, parsed.addresses) {
            (v2::Command::Local, _) => Peer::direct(balancer),
            (_, v2::Addresses::IPv4(ip)) => {
                via(SocketAddr::from((ip.source_address, ip.source_port)))
            }
            (_, v2::Addresses::IPv6(ip)) => {
                via(SocketAddr::from((ip.source_address, ip.source_port)))
            }
            // A balancer that cannot say where the client is: itself.
            (_, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => Peer::direct(balancer),
        }),
        HeaderResult::V1(Err(err)) => Err(ProxyError::Malformed(format!("{err:?}"))),
        HeaderResult::V2(Err(err)) => Err(ProxyError::Malformed(format!("{err:?}"))),
    }
}

/// Whether a frame header's 4 bytes, read as a length, are the start of a
/// PROXY header (`PROX`, or the v2 signature's `\r\n\r\n`): a client that
/// is not a trusted balancer sent one.
pub(crate) fn looks_like_proxy_header(announced_len: usize) -> bool {
    let start = |bytes: &[u8; 4]| u32::from_be_bytes(*bytes) as usize;
    announced_len == start(b"PROX") || announced_len == start(b"\r\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balancer() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    async fn read(bytes: &[u8]) -> (Result<Peer, ProxyError>, Vec<u8>) {
        let mut stream = bytes;
        let peer = read_header(&mut stream, balancer()).await;
        (peer, stream.to_vec())
    }

    #[tokio::test]
    async fn a_v1_header_names_the_client_and_nothing_after_it_is_taken() {
        let (peer, rest) =
            read(b"PROXY TCP4 127.0.0.5 127.0.0.1 51000 13131\r\n\0\0\0\x02{}").await;
        let peer = peer.unwrap();
        assert_eq!(peer.addr, "127.0.0.5:51000".parse().unwrap());
        assert_eq!(peer.via, Some(balancer()));
        assert_eq!(rest, b"\0\0\0\x02{}");
        let (peer, _) = read(b"PROXY UNKNOWN\r\n").await;
        assert_eq!(peer.unwrap(), Peer::direct(balancer()));
    }

    #[tokio::test]
    async fn a_v2_header_names_the_client_and_local_keeps_the_balancer() {
        let mut proxy = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\0\x0c".to_vec();
        proxy.extend_from_slice(&[127, 0, 0, 6, 127, 0, 0, 1, 0x1f, 0x90, 0x33, 0x5b]);
        proxy.extend_from_slice(b"rest");
        let (peer, rest) = read(&proxy).await;
        assert_eq!(peer.unwrap().addr, "127.0.0.6:8080".parse().unwrap());
        assert_eq!(rest, b"rest");
        let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\0\x00";
        assert_eq!(read(local).await.0.unwrap(), Peer::direct(balancer()));
    }

    #[tokio::test]
    async fn no_header_or_a_bad_one_is_refused() {
        assert!(matches!(
            read(b"\0\0\0\x02{}").await.0,
            Err(ProxyError::Missing)
        ));
        assert!(matches!(
            read(b"PROXY TCP4 nonsense here 1 2\r\n").await.0,
            Err(ProxyError::Malformed(_))
        ));
        let endless = [b"PROXY ".as_slice(), &[b'x'; 200]].concat();
        assert!(matches!(
            read(&endless).await.0,
            Err(ProxyError::Malformed(_))
        ));
    }

    #[test]
    fn a_proxy_header_read_as_a_frame_length_is_recognised() {
        assert!(looks_like_proxy_header(0x5052_4f58));
        assert!(looks_like_proxy_header(0x0d0a_0d0a));
        assert!(!looks_like_proxy_header(64));
    }
}
