//! [`MemoryLedger`]: the attempt limits in this process's memory, bounded
//! (reset by a restart; one server's view only).

use std::{collections::HashMap, hash::Hash, net::IpAddr, sync::Mutex};

use super::{
    AccountAttempts, Attempt, AttemptLedger, Bucket, LedgerFuture, Limited, Source,
    UnfamiliarFailures, allowed,
};
use crate::{sys::clock::UnixTime, sys::sync::lock};

/// Attempt limits per account and source, per account from unfamiliar
/// sources, and per source, in this process's memory, bounded.
#[derive(Debug)]
pub struct MemoryLedger {
    accounts: Mutex<Accounts>,
    addresses: Mutex<BoundedMap<Source, Bucket>>,
}

/// What is known of accounts, under one lock.
#[derive(Debug)]
struct Accounts {
    /// Failures of an account from one source.
    from_source: BoundedMap<(String, Source), AccountAttempts>,
    /// An account's failures from unfamiliar sources today.
    unfamiliar: BoundedMap<String, UnfamiliarFailures>,
}

/// A map of at most `cap` entries that may be dropped: when full, the
/// droppable entry touched longest ago makes room. Keys come from the
/// network (addresses), so without a cap a flood of distinct ones would grow
/// it without end. An entry that may not be dropped (failures today or a
/// back-off in force) is never pushed out by others; those exist only for
/// real accounts (see [`AttemptLedger::record_failure`]), each made by a
/// failed password (an Argon2id verification), so they are bounded by the
/// day's failed passwords (docs/RELIABILITY.md, Hardening III).
#[derive(Debug)]
struct BoundedMap<K, V> {
    entries: HashMap<K, (V, UnixTime)>,
    cap: usize,
}

impl MemoryLedger {
    /// Limits with room for `cap` accounts and `cap` sources.
    pub fn new(cap: usize) -> Self {
        Self {
            accounts: Mutex::new(Accounts {
                from_source: BoundedMap::new(cap),
                unfamiliar: BoundedMap::new(cap),
            }),
            addresses: Mutex::new(BoundedMap::new(cap)),
        }
    }

    /// How many (account, source) pairs and sources are tracked (for tests
    /// and stats).
    pub fn tracked(&self) -> (usize, usize) {
        (
            lock(&self.accounts).from_source.len(),
            lock(&self.addresses).len(),
        )
    }

    fn take_from_bucket(&self, ip: IpAddr, per_minute: u32, now: UnixTime) -> Result<(), Limited> {
        let mut addresses = lock(&self.addresses);
        let full = || Bucket::full(per_minute, now);
        let bucket = addresses.entry(Source::of(ip), now, full, |_| true);
        bucket.take(now, per_minute)
    }

    fn account_allowed(&self, attempt: &Attempt<'_>, now: UnixTime) -> Result<(), Limited> {
        let accounts = lock(&self.accounts);
        let key = (attempt.account.to_owned(), attempt.source);
        let from_source = accounts.from_source.get(&key);
        let unfamiliar = accounts.unfamiliar.get(attempt.account);
        allowed(attempt, from_source, unfamiliar, now)
    }

    fn count_failure(&self, attempt: &Attempt<'_>, now: UnixTime) {
        let mut accounts = lock(&self.accounts);
        // Failures today or a back-off in force keep an entry; an older
        // run of failures may make room when the map is full.
        let key = (attempt.account.to_owned(), attempt.source);
        let droppable = |account: &AccountAttempts| account.droppable(now);
        accounts
            .from_source
            .entry(key, now, AccountAttempts::default, droppable)
            .fail(now);
        if !attempt.familiar {
            let droppable = |count: &UnfamiliarFailures| count.droppable(now);
            accounts
                .unfamiliar
                .entry(attempt.account.to_owned(), now, Default::default, droppable)
                .fail(now);
        }
    }

    fn count_success(&self, attempt: &Attempt<'_>) {
        let key = (attempt.account.to_owned(), attempt.source);
        if let Some(account) = lock(&self.accounts).from_source.get_mut(&key) {
            account.succeed();
        }
    }
}

/// The memory ledger's answers are ready at once.
fn ready<'a, T: Send + 'a>(value: T) -> LedgerFuture<'a, T> {
    Box::pin(std::future::ready(Ok(value)))
}

impl AttemptLedger for MemoryLedger {
    fn charge_address(
        &self,
        ip: IpAddr,
        per_minute: u32,
        now: UnixTime,
    ) -> LedgerFuture<'_, Result<(), Limited>> {
        ready(self.take_from_bucket(ip, per_minute, now))
    }

    fn check_account<'a>(
        &'a self,
        attempt: Attempt<'a>,
        now: UnixTime,
    ) -> LedgerFuture<'a, Result<(), Limited>> {
        ready(self.account_allowed(&attempt, now))
    }

    fn record_failure<'a>(&'a self, attempt: Attempt<'a>, now: UnixTime) -> LedgerFuture<'a, ()> {
        self.count_failure(&attempt, now);
        ready(())
    }

    fn record_success<'a>(&'a self, attempt: Attempt<'a>) -> LedgerFuture<'a, ()> {
        self.count_success(&attempt);
        ready(())
    }
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    fn new(cap: usize) -> Self {
        Self {
            entries: HashMap::new(),
            cap: cap.max(1),
        }
    }

    fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key).map(|(value, _)| value)
    }

    fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get_mut(key).map(|(value, _)| value)
    }

    /// The entry for `key`, created with `make` (dropping the stalest entry
    /// that is `droppable` first if the map is full), marked as touched at
    /// `now`.
    fn entry(
        &mut self,
        key: K,
        now: UnixTime,
        make: impl FnOnce() -> V,
        droppable: impl Fn(&V) -> bool,
    ) -> &mut V {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.cap {
            // O(n), but only when full; the cap keeps n small.
            if let Some(stalest) = self
                .entries
                .iter()
                .filter(|(_, (value, _))| droppable(value))
                .min_by_key(|(_, (_, touched))| *touched)
                .map(|(k, _)| k.clone())
            {
                self.entries.remove(&stalest);
            }
        }
        let slot = self.entries.entry(key).or_insert_with(|| (make(), now));
        slot.1 = now;
        &mut slot.0
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// An attempt on `account` from `from`, a source it never logged in from.
    fn stranger<'a>(account: &'a str, from: &str) -> Attempt<'a> {
        Attempt::new(account, ip(from), false)
    }

    #[tokio::test]
    async fn accounts_back_off_after_five_failures_in_a_row() {
        let ledger = MemoryLedger::new(100);
        let ann = stranger("ann", "192.0.2.1");
        for _ in 0..4 {
            ledger.record_failure(ann, 1000).await.unwrap();
            assert!(ledger.check_account(ann, 1000).await.unwrap().is_ok());
        }
        ledger.record_failure(ann, 1000).await.unwrap();
        assert_eq!(
            ledger.check_account(ann, 1000).await.unwrap(),
            Err(Limited { retry_after: 1 })
        );
        assert!(ledger.check_account(ann, 1001).await.unwrap().is_ok());
        ledger.record_failure(ann, 1001).await.unwrap();
        assert_eq!(
            ledger.check_account(ann, 1001).await.unwrap(),
            Err(Limited { retry_after: 2 })
        );
        ledger.record_success(ann).await.unwrap();
        assert!(ledger.check_account(ann, 1001).await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn an_account_gets_at_most_100_failures_a_day_from_one_source() {
        let ledger = MemoryLedger::new(100);
        let ann = stranger("ann", "192.0.2.1");
        let day = 86_400 * 20_000;
        for i in 0..100 {
            ledger.record_failure(ann, day + i).await.unwrap();
            ledger.record_success(ann).await.unwrap();
        }
        assert!(ledger.check_account(ann, day + 200).await.unwrap().is_err());
        let elsewhere = stranger("ann", "192.0.2.2");
        assert!(
            ledger
                .check_account(elsewhere, day + 200)
                .await
                .unwrap()
                .is_ok()
        );
        assert!(
            ledger
                .check_account(ann, day + 86_400)
                .await
                .unwrap()
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_source_gets_its_allowance_per_minute() {
        let ledger = MemoryLedger::new(100);
        let ip = ip("192.0.2.1");
        for _ in 0..10 {
            assert!(ledger.charge_address(ip, 10, 5000).await.unwrap().is_ok());
        }
        assert_eq!(
            ledger.charge_address(ip, 10, 5000).await.unwrap(),
            Err(Limited { retry_after: 6 })
        );
        assert!(ledger.charge_address(ip, 10, 5006).await.unwrap().is_ok());
        let other = "192.0.2.2".parse().unwrap();
        assert!(
            ledger
                .charge_address(other, 10, 5000)
                .await
                .unwrap()
                .is_ok()
        );
    }

    #[tokio::test]
    async fn tracking_memory_is_bounded_under_a_flood_of_addresses() {
        let ledger = MemoryLedger::new(1000);
        for i in 0..20_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            let _ = ledger.charge_address(ip, 10, u64::from(i)).await.unwrap();
        }
        assert_eq!(ledger.tracked(), (0, 1000));
    }

    #[tokio::test]
    async fn a_locked_account_is_never_pushed_out_by_other_names() {
        let ledger = MemoryLedger::new(100);
        let victim = stranger("victim", "192.0.2.1");
        let day = 86_400 * 20_000;
        for _ in 0..6 {
            ledger.record_failure(victim, day).await.unwrap();
        }
        assert!(ledger.check_account(victim, day).await.unwrap().is_err());
        // Ten thousand other accounts failing once each, later the same day.
        for i in 0..10_000u64 {
            let name = format!("user{i}");
            let other = stranger(&name, "192.0.2.9");
            ledger.record_failure(other, day + 1 + i).await.unwrap();
        }
        // The run of failures is remembered: one more doubles the back-off.
        let later = day + 10_001;
        ledger.record_failure(victim, later).await.unwrap();
        assert_eq!(
            ledger.check_account(victim, later).await.unwrap(),
            Err(Limited { retry_after: 4 }),
            "the victim's run of failures was flushed"
        );
        // Accounts whose failures are over (a day later, no back-off) make
        // room for new ones: the map does not grow further.
        let tracked = ledger.tracked().0;
        let next_day = day + 2 * 86_400;
        for i in 0..200 {
            let name = format!("new{i}");
            let other = stranger(&name, "192.0.2.9");
            ledger.record_failure(other, next_day).await.unwrap();
        }
        assert_eq!(ledger.tracked().0, tracked);
    }
}
