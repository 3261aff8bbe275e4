//! The connection limit as a semaphore whose size follows
//! `max_connections` when a reload changes it. A connection's permit is
//! still moved into its task, so no path can leak one; growing adds
//! permits at once, shrinking takes free ones back at once and the rest
//! as connections end (the connections over the new limit are not cut:
//! they are established sessions, and keep their connection).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The listener's connection limit. Only the accept loop resizes it, so
/// the bookkeeping needs no lock.
#[derive(Debug)]
pub(super) struct Capacity {
    permits: Arc<Semaphore>,
    /// The limit in force.
    size: usize,
    /// Permits still to take back from connections that end: a shrink
    /// takes only the free ones at once.
    owed: usize,
}

impl Capacity {
    /// A limit of `size` connections at once.
    pub(super) fn new(size: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(size)),
            size,
            owed: 0,
        }
    }

    /// Follows `size` (the settings' `max_connections`): whether it changed.
    pub(super) fn resize(&mut self, size: usize) -> bool {
        let changed = size != self.size;
        if size > self.size {
            let grow = size - self.size;
            let forgiven = grow.min(self.owed);
            self.owed -= forgiven;
            self.permits.add_permits(grow - forgiven);
        } else {
            self.owed += self.size - size;
        }
        self.size = size;
        if self.owed > 0 {
            self.owed -= self.permits.forget_permits(self.owed);
        }
        changed
    }

    /// A place for one more connection, if the limit has one.
    pub(super) fn try_acquire(&self) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        Arc::clone(&self.permits).try_acquire_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_adds_places_and_shrinking_takes_them_back_as_connections_end() {
        let mut capacity = Capacity::new(2);
        let first = capacity.try_acquire().expect("1 of 2");
        let second = capacity.try_acquire().expect("2 of 2");
        assert!(capacity.try_acquire().is_err());
        assert!(capacity.resize(3));
        let third = capacity.try_acquire().expect("3 of 3");
        // Down to 1 with 3 held: nobody is cut, nobody new gets in.
        assert!(capacity.resize(1));
        drop(first);
        assert!(!capacity.resize(1));
        assert!(capacity.try_acquire().is_err(), "2 held, limit 1");
        drop(second);
        assert!(!capacity.resize(1));
        assert!(capacity.try_acquire().is_err(), "1 held, limit 1");
        drop(third);
        assert!(!capacity.resize(1));
        let only = capacity.try_acquire().expect("1 of 1");
        assert!(capacity.try_acquire().is_err());
        // Growing again first forgives what is still owed.
        drop(only);
        assert!(capacity.resize(2));
        let _a = capacity.try_acquire().expect("1 of 2");
        let _b = capacity.try_acquire().expect("2 of 2");
        assert!(capacity.try_acquire().is_err());
    }
}
