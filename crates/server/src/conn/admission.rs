//! Per-source limits, like OpenSSH's `PerSourceMaxStartups` and nginx's
//! `limit_conn`: one address may hold at most `max_connections_per_ip`
//! connections, of which at most `max_handshakes_per_ip` still in the
//! handshake, so that no single source can take every slot of the server.
//! IPv6 addresses count by their /64, the block one host usually gets.
//!
//! A connection holds a [`SourceSlot`] for its whole life; the slot counts
//! it as in the handshake until [`SourceSlot::handshake_done`], and gives
//! everything back when dropped, so no path can leak a place.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use crate::{
    config::Limits,
    sys::{peer::Source, sync::lock},
};

/// The counts of every source with at least one connection.
#[derive(Debug, Default)]
pub struct Sources {
    counts: Arc<Mutex<HashMap<Source, Counts>>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    connections: usize,
    handshakes: usize,
}

/// Which per-source limit a connection ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    /// `max_connections_per_ip`.
    Connections,
    /// `max_handshakes_per_ip`.
    Handshakes,
}

/// A connection's place in its source's count.
#[derive(Debug)]
pub struct SourceSlot {
    counts: Arc<Mutex<HashMap<Source, Counts>>>,
    source: Source,
    /// Held while the connection is in the handshake.
    handshake: bool,
}

impl Sources {
    /// Takes a connection and a handshake place for `ip`, or says which
    /// of `limits` (the settings in force) is reached (then nothing is
    /// taken).
    pub fn admit(&self, ip: IpAddr, limits: &Limits) -> Result<SourceSlot, OverLimit> {
        self.take(ip, limits, true)
    }

    /// Takes a connection place (no handshake place) for a trusted
    /// balancer at `ip` while its PROXY header is read: a balancer opens
    /// connections for many clients at once, each charged to its client
    /// once the header names it, so only the balancer's connection cap
    /// bounds the connections still waiting for their header.
    pub fn admit_balancer(&self, ip: IpAddr, limits: &Limits) -> Result<SourceSlot, OverLimit> {
        self.take(ip, limits, false)
    }

    fn take(&self, ip: IpAddr, limits: &Limits, handshake: bool) -> Result<SourceSlot, OverLimit> {
        let source = Source::of(ip);
        let mut counts = lock(&self.counts);
        let entry = counts.entry(source).or_default();
        let over = if entry.connections >= limits.max_connections_per_ip {
            Some(OverLimit::Connections)
        } else if handshake && entry.handshakes >= limits.max_handshakes_per_ip {
            Some(OverLimit::Handshakes)
        } else {
            None
        };
        if let Some(over) = over {
            // Never an empty entry: a refusal means connections are held.
            return Err(over);
        }
        entry.connections += 1;
        entry.handshakes += usize::from(handshake);
        Ok(SourceSlot {
            counts: Arc::clone(&self.counts),
            source,
            handshake,
        })
    }

    /// How many sources have connections now (for tests).
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        lock(&self.counts).len()
    }
}

impl SourceSlot {
    /// The handshake is over: its place goes back to the source.
    pub fn handshake_done(&mut self) {
        if std::mem::take(&mut self.handshake) {
            let mut counts = lock(&self.counts);
            if let Some(entry) = counts.get_mut(&self.source) {
                entry.handshakes -= 1;
            }
        }
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(entry) = counts.get_mut(&self.source) {
            entry.connections -= 1;
            if self.handshake {
                entry.handshakes -= 1;
            }
            if entry.connections == 0 {
                counts.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn per_source(connections: usize, handshakes: usize) -> Limits {
        Limits {
            max_connections_per_ip: connections,
            max_handshakes_per_ip: handshakes,
            ..Limits::default()
        }
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_bit_prefix() {
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:192.0.2.1")),
            Source::of(ip("192.0.2.1"))
        );
        assert_ne!(Source::of(ip("192.0.2.1")), Source::of(ip("192.0.2.2")));
        for text in ["192.0.2.1", "2001:db8:1:2::7", "::ffff:192.0.2.1", "::1"] {
            let source = Source::of(ip(text));
            assert_eq!(Source::of(source.address()), source, "{text}");
        }
        assert_eq!(
            Source::of(ip("2001:db8:1:2::7")).address(),
            ip("2001:db8:1:2::")
        );
    }

    #[test]
    fn handshakes_and_connections_are_limited_per_source_and_given_back() {
        let sources = Sources::default();
        let limits = &per_source(3, 2);
        let a = ip("192.0.2.1");
        let mut first = sources.admit(a, limits).unwrap();
        let _second = sources.admit(a, limits).unwrap();
        assert_eq!(sources.admit(a, limits).unwrap_err(), OverLimit::Handshakes);
        assert!(
            sources.admit(ip("192.0.2.2"), limits).is_ok(),
            "other sources are not affected"
        );
        first.handshake_done();
        let mut third = sources.admit(a, limits).unwrap();
        third.handshake_done();
        assert_eq!(
            sources.admit(a, limits).unwrap_err(),
            OverLimit::Connections
        );
        drop(third);
        let fourth = sources.admit(a, limits).unwrap();
        drop((first, fourth, _second));
        assert_eq!(sources.tracked(), 0, "an empty source is forgotten");
    }

    #[test]
    fn a_balancer_waiting_for_headers_counts_connections_not_handshakes() {
        let sources = Sources::default();
        let limits = &per_source(3, 1);
        let balancer = ip("192.0.2.9");
        let waiting: Vec<_> = (0..3)
            .map(|_| sources.admit_balancer(balancer, limits).unwrap())
            .collect();
        assert_eq!(
            sources.admit_balancer(balancer, limits).unwrap_err(),
            OverLimit::Connections
        );
        drop(waiting);
        assert_eq!(sources.tracked(), 0);
        let _client = sources.admit(balancer, limits).unwrap();
        assert_eq!(
            sources.admit(balancer, limits).unwrap_err(),
            OverLimit::Handshakes
        );
    }
}
