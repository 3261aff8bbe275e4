//! Counters shown by `/stats`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Server-wide counters, updated without locks.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    connections_now: AtomicU64,
    connections_total: AtomicU64,
    messages_served: AtomicU64,
}

/// Counts one open connection for as long as it lives.
#[derive(Debug)]
pub struct ConnectionCount(Arc<Stats>);

impl Stats {
    /// Fresh counters; uptime starts now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            connections_now: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            messages_served: AtomicU64::new(0),
        }
    }

    /// Counts a connection until the returned guard is dropped.
    pub fn connection(self: &Arc<Self>) -> ConnectionCount {
        self.connections_now.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        ConnectionCount(Arc::clone(self))
    }

    /// Counts one `say` answered.
    pub fn message_served(&self) {
        self.messages_served.fetch_add(1, Ordering::Relaxed);
    }

    /// Time since the server started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Connections open now.
    pub fn connections_now(&self) -> u64 {
        self.connections_now.load(Ordering::Relaxed)
    }

    /// Connections accepted since start.
    pub fn connections_total(&self) -> u64 {
        self.connections_total.load(Ordering::Relaxed)
    }

    /// `say` messages answered since start.
    pub fn messages_served(&self) -> u64 {
        self.messages_served.load(Ordering::Relaxed)
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.connections_now.fetch_sub(1, Ordering::Relaxed);
    }
}
