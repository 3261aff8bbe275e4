//! Who is at the other end of a connection: its [`Peer`] (the client's
//! address, and the balancer it came through), and the [`Source`] that
//! per-address limits and the attempt ledger count it against.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
};

/// Who a connection speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The client's address: identification, limits and logs use it.
    pub addr: SocketAddr,
    /// The proxy the connection came through, when a PROXY header named
    /// another client address.
    pub via: Option<SocketAddr>,
}

/// The source a limit counts: an IPv4 address, or the first 64 bits of an
/// IPv6 one (an IPv4-mapped IPv6 address counts as its IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// An IPv4 address.
    V4([u8; 4]),
    /// An IPv6 /64 prefix.
    V6(u64),
}

impl Source {
    /// The source `ip` counts against.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => Source::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }

    /// The address that stands for this source where one is stored (a
    /// database column, a journal line): the IPv4 address, or the /64
    /// prefix with the rest zero. [`Source::of`] of it is this source again.
    pub fn address(self) -> IpAddr {
        match self {
            Source::V4(octets) => IpAddr::from(octets),
            Source::V6(prefix) => IpAddr::from(std::net::Ipv6Addr::from(u128::from(prefix) << 64)),
        }
    }
}

/// A connection's id in the log and in `/whoami`: 8 hex digits, random,
/// short enough to read and to grep for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId(u32);

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
