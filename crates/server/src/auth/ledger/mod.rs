//! The attempt ledger: failed passwords per account and password attempts
//! per address, checked before any password work is done.
//!
//! [`AttemptLedger`] is the seam: [`MemoryLedger`] keeps the counts in this
//! process (reset by a restart); a ledger in a shared database makes the
//! limits hold across servers. Its methods return boxed futures so that the
//! ledger can be chosen at run time; they run a few times per login, never
//! per message, so the allocation costs nothing that shows.

mod memory;

use std::{fmt, future::Future, net::IpAddr, pin::Pin};

pub use memory::MemoryLedger;

use crate::{clock::UnixTime, store::StoreError};

/// Consecutive failures on an account before back-off starts.
const FREE_FAILURES: u32 = 5;
/// Longest back-off, in seconds.
const MAX_BACKOFF_SECS: u64 = 15 * 60;
/// Failures an account may collect in a day.
const MAX_FAILURES_PER_DAY: u32 = 100;

/// What a ledger call returns: a boxed future, so ledgers can be swapped at
/// run time. A shared ledger can fail ([`StoreError`]); the memory one never does.
pub type LedgerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A refusal: try again after `retry_after` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Seconds to wait.
    pub retry_after: u64,
}

/// Where attempt limits are counted.
pub trait AttemptLedger: Send + Sync + fmt::Debug {
    /// Takes one password attempt from `ip`'s allowance, or says how long
    /// to wait for the next one.
    fn charge_address(&self, ip: IpAddr, now: UnixTime) -> LedgerFuture<'_, Result<(), Limited>>;

    /// Whether `user` may try a password now.
    fn check_account<'a>(
        &'a self,
        user: &'a str,
        now: UnixTime,
    ) -> LedgerFuture<'a, Result<(), Limited>>;

    /// Counts a failed password for `user`; from the fifth in a row each one
    /// blocks the account for twice as long as the one before. Called for
    /// existing users only: a name that is no account has nothing to
    /// protect, and junk names must not take the room of real accounts.
    fn record_failure<'a>(&'a self, user: &'a str, now: UnixTime) -> LedgerFuture<'a, ()>;

    /// A correct password: the account's run of failures is over.
    fn record_success<'a>(&'a self, user: &'a str) -> LedgerFuture<'a, ()>;
}

/// One account's failed passwords: its run of failures and back-off, and
/// its count for the day. Every ledger keeps these and applies the same rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountAttempts {
    /// Failures in a row.
    pub consecutive: u32,
    /// No attempt before this time.
    pub blocked_until: UnixTime,
    /// The day (Unix days) `today` counts.
    pub day: u64,
    /// Failures on `day`.
    pub today: u32,
}

impl AccountAttempts {
    /// Whether a password may be tried at `now`.
    pub fn allowed(&self, now: UnixTime) -> Result<(), Limited> {
        if self.day == now / 86_400 && self.today >= MAX_FAILURES_PER_DAY {
            return Err(Limited {
                retry_after: 86_400 - now % 86_400,
            });
        }
        if self.blocked_until > now {
            return Err(Limited {
                retry_after: self.blocked_until - now,
            });
        }
        Ok(())
    }

    /// Counts a failure at `now`: from the fifth in a row each one blocks
    /// the account for twice as long as the one before.
    pub fn fail(&mut self, now: UnixTime) {
        let day = now / 86_400;
        if self.day != day {
            self.day = day;
            self.today = 0;
        }
        self.today += 1;
        self.consecutive += 1;
        if self.consecutive >= FREE_FAILURES {
            let doublings = (self.consecutive - FREE_FAILURES).min(20);
            let backoff = (1u64 << doublings).min(MAX_BACKOFF_SECS);
            self.blocked_until = now + backoff;
        }
    }

    /// A correct password ends the run of failures (the day's count stays).
    pub fn succeed(&mut self) {
        self.consecutive = 0;
        self.blocked_until = 0;
    }

    /// Whether forgetting it now loses nothing that protects the account:
    /// no back-off in force and no failures today.
    pub fn droppable(&self, now: UnixTime) -> bool {
        self.blocked_until <= now && self.day != now / 86_400
    }
}

/// A token bucket of password attempts for one address: `tokens` refill at
/// `per_minute` a minute up to `per_minute`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Attempts left (fractions refill).
    pub tokens: f64,
    /// When `tokens` was last worked out.
    pub updated: UnixTime,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn full(per_minute: u32, now: UnixTime) -> Self {
        Self {
            tokens: f64::from(per_minute.max(1)),
            updated: now,
        }
    }

    /// Takes one attempt at `now`, or says how long until there is one.
    pub fn take(&mut self, now: UnixTime, per_minute: u32) -> Result<(), Limited> {
        let per_minute = f64::from(per_minute.max(1));
        let elapsed = now.saturating_sub(self.updated) as f64;
        self.tokens = (self.tokens + elapsed * per_minute / 60.0).min(per_minute);
        self.updated = self.updated.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - self.tokens) * 60.0 / per_minute).ceil() as u64;
            Err(Limited {
                retry_after: wait.max(1),
            })
        }
    }
}
