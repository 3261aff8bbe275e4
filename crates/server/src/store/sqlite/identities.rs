//! Names known by address, kept in memory once read.
//!
//! `ask_auth` and the identification greeting read an address's name on
//! every connection; read from the file, that is a hop to a reading thread
//! and back for each (on the resume benchmark, the gap between SQLite and
//! the journal that kept everything in memory). So the names read are kept
//! here. A change made by this process is written through once committed:
//! each takes a ticket on the writer thread, in commit order, and an entry
//! is never replaced by an older ticket's. Changes by any process (this
//! one too) move the file's `identity_changes` counter (a trigger,
//! migration 0002), which the follower reads with the revocations every
//! 100 ms: when it moved, every entry is dropped, and changes ticketed
//! before that are not written through (the file has them). A name changed
//! by another server is seen here within that. Until the follower runs (an
//! admin command), nothing is kept.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

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
    /// The last ticket given to a change (see [`Tickets::take`]).
    tickets: Tickets,
}

/// Tickets for changes of names, taken on the writer thread: their order
/// is the order of the commits.
#[derive(Clone, Default)]
pub(super) struct Tickets(Arc<AtomicU64>);

impl Tickets {
    /// The next ticket (from 1).
    pub fn take(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn last(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
struct State {
    /// Set by the follower's first reading of the counter.
    on: bool,
    /// Moved by every drop: a read started before one fills nothing.
    generation: u64,
    /// The file's counter when the entries were read.
    version: i64,
    /// Changes with a ticket below this are not written through.
    floor: u64,
    /// Each with the ticket of the change it came from (0: read).
    entries: HashMap<IpAddr, (Known, u64)>,
}

impl State {
    fn keep(&mut self, ip: IpAddr, known: Known, ticket: u64) {
        if self.entries.len() >= CAPACITY {
            self.entries.clear();
        }
        self.entries.insert(ip, (known, ticket));
    }
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
            Some((known, _)) if state.on => Lookup::Kept(known.clone()),
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
        state.keep(ip, known, 0);
    }

    /// The tickets changes of names take.
    pub fn tickets(&self) -> Tickets {
        self.tickets.clone()
    }

    /// This process committed a change of `ip`'s name to `known`, under
    /// `ticket`; `None` when the change failed (what the file holds is not
    /// known here).
    pub fn changed(&self, ip: IpAddr, change: Option<(u64, Known)>) {
        let mut state = self.state();
        state.generation += 1;
        match change {
            Some((ticket, known)) if state.on && ticket >= state.floor => {
                if state
                    .entries
                    .get(&ip)
                    .is_none_or(|(_, kept)| *kept < ticket)
                {
                    state.keep(ip, known, ticket);
                }
            }
            _ => drop(state.entries.remove(&ip)),
        }
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
        state.floor = self.tickets.last() + 1;
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
        cache.changed(ip(1), None);
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
        cache.changed(ip(1), None);
        assert_eq!(cache.kept(), 2);
        cache.counter_read(4);
        assert_eq!(cache.kept(), 0);
    }
}

#[cfg(test)]
mod written_through {
    use super::*;

    fn name(cache: &IdentityCache, at: IpAddr) -> Option<String> {
        match cache.lookup(at) {
            Lookup::Kept(known) => known.map(|(name, _)| name),
            Lookup::Read(_) => Some("(not kept)".into()),
        }
    }

    #[test]
    fn changes_here_are_kept_in_commit_order_whatever_order_they_arrive_in() {
        let cache = IdentityCache::default();
        cache.counter_read(0);
        let at = IpAddr::from([192, 0, 2, 9]);
        let (first, second) = (cache.tickets().take(), cache.tickets().take());
        cache.changed(at, Some((second, Some(("bob".into(), 2)))));
        cache.changed(at, Some((first, Some(("ann".into(), 1)))));
        assert_eq!(name(&cache, at).as_deref(), Some("bob"));
        let third = cache.tickets().take();
        cache.changed(at, Some((third, None)));
        assert_eq!(name(&cache, at), None, "forgotten here");
    }

    #[test]
    fn a_change_ticketed_before_the_counter_moved_is_left_to_the_file() {
        let cache = IdentityCache::default();
        cache.counter_read(0);
        let at = IpAddr::from([192, 0, 2, 9]);
        let early = cache.tickets().take();
        cache.counter_read(1);
        cache.changed(at, Some((early, Some(("ann".into(), 1)))));
        assert_eq!(name(&cache, at).as_deref(), Some("(not kept)"));
    }
}
