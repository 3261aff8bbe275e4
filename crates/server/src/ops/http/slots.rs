//! The metrics port's connections: at most a fixed number at once, and
//! when every slot is taken a new connection takes the slot of the one that
//! has gone longest without a request, which is closed. A connection that
//! never completes a head (silent, or sending a byte at a time) is never
//! renewed, so an attacker who fills the slots only gets their own sockets
//! closed; a health checker sends its request with its first packet, is the
//! newest connection, and is answered.
//!
//! Each connection also carries its deadline: the instant its current
//! request (head read, answer written) must be done by, moved on when an
//! answer has been handed over.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::sys::sync::lock;

/// The slots of one port.
#[derive(Debug)]
pub(super) struct Slots {
    capacity: usize,
    /// What the connections' deadlines are counted from (milliseconds).
    epoch: Instant,
    /// Numbers connects and request heads in the order they come.
    order: Arc<AtomicU64>,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    next_id: u64,
    connections: HashMap<u64, Arc<Connection>>,
}

/// What the port knows of one connection.
#[derive(Debug)]
pub(super) struct Connection {
    /// When its last request head came (or it connected), as numbered by
    /// the port's `order`.
    last_request: AtomicU64,
    order: Arc<AtomicU64>,
    /// When its current request must be done by, in ms.
    deadline: AtomicU64,
    /// Time each request has, from the previous answer (or the connect).
    request_time: Duration,
    /// Cancelled when another connection takes its slot.
    evicted: CancellationToken,
    epoch: Instant,
}

/// One connection's slot, given back when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    connection: Arc<Connection>,
}

impl Slots {
    /// `capacity` slots (at least one).
    pub(super) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            epoch: Instant::now(),
            order: Arc::default(),
            held: Mutex::default(),
        })
    }

    /// A slot for a new connection whose requests each have `request_time`;
    /// when every slot is taken, the connection longest without a request
    /// is told to close (its slot is this one's at once). Whether one was.
    pub(super) fn take(self: &Arc<Self>, request_time: Duration) -> (Slot, bool) {
        let connection = Arc::new(Connection {
            last_request: AtomicU64::new(0),
            order: Arc::clone(&self.order),
            deadline: AtomicU64::new(0),
            request_time,
            evicted: CancellationToken::new(),
            epoch: self.epoch,
        });
        connection.requested();
        connection.answered();
        let mut held = lock(&self.held);
        let evicted = held.connections.len() >= self.capacity;
        if evicted {
            let oldest = held
                .connections
                .iter()
                .min_by_key(|(_, c)| c.last_request.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            if let Some(gone) = oldest.and_then(|id| held.connections.remove(&id)) {
                gone.evicted.cancel();
            }
        }
        let id = held.next_id;
        held.next_id += 1;
        held.connections.insert(id, Arc::clone(&connection));
        drop(held);
        let slot = Slot {
            slots: Arc::clone(self),
            id,
            connection,
        };
        (slot, evicted)
    }

    fn now_ms(epoch: Instant) -> u64 {
        u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Slot {
    /// The connection's state, for its requests and answers.
    pub(super) fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.slots.held).connections.remove(&self.id);
    }
}

impl Connection {
    /// A request head has come.
    pub(super) fn requested(&self) {
        let turn = self.order.fetch_add(1, Ordering::Relaxed);
        self.last_request.store(turn, Ordering::Relaxed);
    }

    /// An answer has been handed over: the next request's time starts.
    pub(super) fn answered(&self) {
        let time = u64::try_from(self.request_time.as_millis()).unwrap_or(u64::MAX);
        let deadline = Slots::now_ms(self.epoch).saturating_add(time);
        self.deadline.store(deadline, Ordering::Relaxed);
    }

    /// When the current request must be done by.
    pub(super) fn deadline(&self) -> Instant {
        let ms = self.deadline.load(Ordering::Relaxed);
        self.epoch + Duration::from_millis(ms)
    }

    /// Resolves when another connection has taken this one's slot.
    pub(super) async fn evicted(&self) {
        self.evicted.cancelled().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_port_closes_the_connection_longest_without_a_request() {
        let slots = Slots::new(2);
        let time = Duration::from_secs(10);
        let (first, _) = slots.take(time);
        let (second, evicted) = slots.take(time);
        assert!(!evicted);
        // The first asks again: the second is now the longest without one.
        first.connection().requested();
        let (third, evicted) = slots.take(time);
        assert!(evicted);
        assert!(second.connection().evicted.is_cancelled());
        assert!(!first.connection().evicted.is_cancelled());
        drop(second);
        assert_eq!(lock(&slots.held).connections.len(), 2);
        drop((first, third));
        assert!(lock(&slots.held).connections.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_moves_the_deadline_on() {
        let slots = Slots::new(1);
        let (slot, _) = slots.take(Duration::from_secs(10));
        let first = slot.connection().deadline();
        assert_eq!(first - Instant::now(), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(3)).await;
        slot.connection().answered();
        assert_eq!(slot.connection().deadline() - first, Duration::from_secs(3));
    }
}
