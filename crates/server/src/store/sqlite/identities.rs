//! Names known by address, kept in memory once read.
//!
//! `ask_auth` and the identification greeting read an address's name on
//! every connection; read from the file, that is a hop to a reading thread
//! and back for each (on the resume benchmark, the gap between SQLite and
//! the journal that kept everything in memory). So the names read are kept
//! here. Changes made by this process drop the address's entry when they
//! are committed; changes by any process (this one too) move the file's
//! `identity_changes` counter (a trigger, migration 0002), which the
//! follower reads with the revocations every 100 ms: when it moved, every
//! entry is dropped. A name changed by another server is seen here within
//! that. Until the follower runs (an admin command), nothing is kept.

use std::{collections::HashMap, net::IpAddr, sync::Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::Failure;

/// Entries at most; when full, all are dropped and reading starts again.
const CAPACITY: usize = 16_384;

/// An address's name and when it was last seen (seconds), or none.
pub(super) type Known = Option<(String, i64)>;

/// The names read, and what makes them stale.
#[derive(Default)]
pub(super) struct IdentityCache {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Set by the follower's first reading of the counter.
    on: bool,
    /// Moved by every drop: a read started before one fills nothing.
    generation: u64,
    /// The file's counter when the entries were read.
    version: i64,
    entries: HashMap<IpAddr, Known>,
}

/// What the cache says of an address.
pub(super) enum Lookup {
    /// Kept: this is what the file said.
    Kept(Known),
    /// Not kept: read the file, then [`IdentityCache::fill`] with this.
    Read(u64),
}

impl IdentityCache {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a cache: whatever a panicking holder left, it is
        // still a set of entries read from the file.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What is kept for `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Lookup {
        let state = self.state();
        match state.entries.get(&ip) {
            Some(known) if state.on => Lookup::Kept(known.clone()),
            _ => Lookup::Read(state.generation),
        }
    }

    /// Keeps what was read for `ip`, unless something was dropped since
    /// the read began (`generation` from [`IdentityCache::lookup`]).
    pub fn fill(&self, ip: IpAddr, generation: u64, known: Known) {
        let mut state = self.state();
        if !state.on || state.generation != generation {
            return;
        }
        if state.entries.len() >= CAPACITY {
            state.entries.clear();
        }
        state.entries.insert(ip, known);
    }

    /// This process changed `ip`'s name (committed).
    pub fn changed(&self, ip: IpAddr) {
        let mut state = self.state();
        state.generation += 1;
        state.entries.remove(&ip);
    }

    /// The follower read the file's counter: starts keeping names, and
    /// drops them all when it moved.
    pub fn counter_read(&self, version: i64) {
        let mut state = self.state();
        if state.on && state.version == version {
            return;
        }
        state.on = true;
        state.version = version;
        state.generation += 1;
        state.entries.clear();
    }

    /// How many addresses are kept (for the tests).
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.state().entries.len()
    }
}

/// `ip`'s row, as the file has it.
pub(super) fn read_identity(connection: &Connection, ip: IpAddr) -> Result<Known, Failure> {
    let sql = "SELECT name, seen FROM identities WHERE ip = ?1";
    Ok(connection
        .prepare_cached(sql)?
        .query_row(params![ip.to_string()], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?)
}

/// The file's count of changes to `identities`.
pub(super) fn changes_on(connection: &Connection) -> Result<i64, Failure> {
    let sql = "SELECT version FROM identity_changes WHERE one = 1";
    Ok(connection
        .prepare_cached(sql)?
        .query_row([], |row| row.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn read(cache: &IdentityCache, at: IpAddr) -> u64 {
        match cache.lookup(at) {
            Lookup::Read(generation) => generation,
            Lookup::Kept(known) => panic!("kept: {known:?}"),
        }
    }

    #[test]
    fn nothing_is_kept_until_the_follower_reads_the_counter() {
        let cache = IdentityCache::default();
        let generation = read(&cache, ip(1));
        cache.fill(ip(1), generation, Some(("ann".into(), 1)));
        assert_eq!(cache.kept(), 0);
        cache.counter_read(0);
        let generation = read(&cache, ip(1));
        cache.fill(ip(1), generation, Some(("ann".into(), 1)));
        assert!(matches!(cache.lookup(ip(1)), Lookup::Kept(Some((name, 1))) if name == "ann"));
    }

    #[test]
    fn a_read_that_began_before_a_change_keeps_nothing() {
        let cache = IdentityCache::default();
        cache.counter_read(0);
        let before = read(&cache, ip(1));
        cache.changed(ip(1));
        cache.fill(ip(1), before, Some(("old".into(), 1)));
        assert_eq!(cache.kept(), 0);
        let before = read(&cache, ip(2));
        cache.counter_read(1);
        cache.fill(ip(2), before, None);
        assert_eq!(cache.kept(), 0);
    }

    #[test]
    fn a_moved_counter_drops_everything_and_a_change_here_drops_its_address() {
        let cache = IdentityCache::default();
        cache.counter_read(3);
        for last in 1..=3 {
            let generation = read(&cache, ip(last));
            cache.fill(ip(last), generation, None);
        }
        cache.counter_read(3);
        assert_eq!(cache.kept(), 3, "an unmoved counter keeps them");
        cache.changed(ip(1));
        assert_eq!(cache.kept(), 2);
        cache.counter_read(4);
        assert_eq!(cache.kept(), 0);
    }
}
