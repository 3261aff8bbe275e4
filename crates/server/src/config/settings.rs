//! The settings in force: one [`ServerConfig`] snapshot that every
//! connection reads where a limit applies, and that a reload replaces whole.
//!
//! An `arc_swap::ArcSwap` rather than a `tokio::sync::watch`: the snapshot
//! is read on every message by every connection, on every core, and
//! written a few times in the life of the process. `ArcSwap::load` takes no
//! lock and writes no shared cache line; `watch::Receiver::borrow` takes a
//! read lock that every reader shares. Nothing here needs to be woken by a
//! change: a connection reads the snapshot when it next needs a value.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::ServerConfig;

/// A handle to the settings in force; clones share the one snapshot.
#[derive(Debug, Clone)]
pub struct Settings(Arc<ArcSwap<ServerConfig>>);

impl Settings {
    /// Settings that start as `config`.
    pub fn new(config: ServerConfig) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(config)))
    }

    /// The snapshot in force now. Read what is needed and let it go: the
    /// guard is not to be held across an `.await` (each thread has a few
    /// cheap slots; more guards at once fall back to a reference count).
    pub fn now(&self) -> Guard<Arc<ServerConfig>> {
        self.0.load()
    }

    /// Puts `next` in force: connections see it at their next read.
    pub fn replace(&self, next: ServerConfig) {
        self.0.store(Arc::new(next));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_snapshot() {
        let settings = Settings::new(ServerConfig::default());
        let reader = settings.clone();
        let mut next = ServerConfig::default();
        next.limits.max_repeat = 7;
        settings.replace(next);
        assert_eq!(reader.now().limits.max_repeat, 7);
    }
}
