//! The attempt ledger: failed passwords per account and source, and
//! password attempts per source, checked before any password work is done.
//!
//! A source is the unit the connection caps count (`Source`: an IPv4
//! address, an IPv6 /64). The rules, the same in every ledger:
//!
//! - each source has an allowance of password attempts a minute
//!   ([`Bucket`], `auth_attempts_per_minute`), whatever the account;
//! - an account's failures are counted per source ([`AccountAttempts`]):
//!   from the fifth in a row from one source, that source waits a doubling
//!   back-off, and one source may fail at most [`MAX_FAILURES_PER_DAY`]
//!   times a day on one account. Failures from one source never slow the
//!   account down from another;
//! - failures from sources the account never logged in from (unfamiliar:
//!   the store remembers where each account logged in, see
//!   [`UserStore::familiar_since`](crate::store::UserStore::familiar_since))
//!   also count towards a ceiling for the account
//!   ([`MAX_UNFAMILIAR_FAILURES_PER_DAY`], [`UnfamiliarFailures`]): once
//!   reached, unfamiliar sources are refused until UTC midnight, while the
//!   sources the account logged in from before go on as if nothing happened.
//!
//! [`AttemptLedger`] is the seam: [`MemoryLedger`] keeps the counts in this
//! process (reset by a restart); a ledger in a shared database makes the
//! limits hold across servers. Its methods return boxed futures so that the
//! ledger can be chosen at run time; they run a few times per login, never
//! per message, so the allocation costs nothing that shows.

mod memory;

use std::{fmt, future::Future, net::IpAddr, pin::Pin};

pub use memory::MemoryLedger;

use crate::sys::peer::Source;
use crate::{store::StoreError, sys::clock::UnixTime};

/// Consecutive failures from one source on an account before back-off starts.
const FREE_FAILURES: u32 = 5;
/// Longest back-off, in seconds.
const MAX_BACKOFF_SECS: u64 = 15 * 60;
/// Failures one source may make on one account in a (UTC) day.
pub const MAX_FAILURES_PER_DAY: u32 = 100;
/// Failures from unfamiliar sources, all together, one account may collect
/// in a (UTC) day: an attacker with N addresses gets at most
/// `min(N * MAX_FAILURES_PER_DAY, MAX_UNFAMILIAR_FAILURES_PER_DAY)` guesses.
pub const MAX_UNFAMILIAR_FAILURES_PER_DAY: u32 = 1000;

/// What a ledger call returns: a boxed future, so ledgers can be swapped at
/// run time. A shared ledger can fail ([`StoreError`]); the memory one never does.
pub type LedgerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A refusal: try again after `retry_after` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Seconds to wait.
    pub retry_after: u64,
}

/// A password tried for an account from a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt<'a> {
    /// The account (its canonical name).
    pub account: &'a str,
    /// Where the attempt comes from.
    pub source: Source,
    /// Whether the account logged in from `source` before (and the store
    /// still remembers it).
    pub familiar: bool,
}

impl<'a> Attempt<'a> {
    /// An attempt on `account` from `ip` (counted as `Source::of` it).
    pub fn new(account: &'a str, ip: IpAddr, familiar: bool) -> Self {
        Self {
            account,
            source: Source::of(ip),
            familiar,
        }
    }
}

/// Where attempt limits are counted.
pub trait AttemptLedger: Send + Sync + fmt::Debug {
    /// Takes one password attempt from the allowance of `ip`'s source
    /// (`Source::of`), `per_minute` a minute as the settings in force say
    /// (`auth_attempts_per_minute`: a reload may change it), or says how
    /// long to wait for the next one.
    fn charge_address(
        &self,
        ip: IpAddr,
        per_minute: u32,
        now: UnixTime,
    ) -> LedgerFuture<'_, Result<(), Limited>>;

    /// Whether a password may be tried now: the back-off and daily count of
    /// the account from this source, and for an unfamiliar source the
    /// account's ceiling too ([`allowed`]).
    fn check_account<'a>(
        &'a self,
        attempt: Attempt<'a>,
        now: UnixTime,
    ) -> LedgerFuture<'a, Result<(), Limited>>;

    /// Counts a failed password ([`AccountAttempts::fail`] for the account
    /// from this source; [`UnfamiliarFailures::fail`] too for an unfamiliar
    /// source). Called for existing users only: a name that is no account
    /// has nothing to protect, and junk names must not take the room of
    /// real accounts.
    fn record_failure<'a>(&'a self, attempt: Attempt<'a>, now: UnixTime) -> LedgerFuture<'a, ()>;

    /// A correct password: the account's run of failures from this source
    /// is over (other sources' runs go on).
    fn record_success<'a>(&'a self, attempt: Attempt<'a>) -> LedgerFuture<'a, ()>;
}

/// The rule every ledger applies: `from_source` is what the ledger knows of
/// the account from the attempt's source, `unfamiliar` its failures from
/// unfamiliar sources. A familiar source answers to its own count only.
pub fn allowed(
    attempt: &Attempt<'_>,
    from_source: Option<&AccountAttempts>,
    unfamiliar: Option<&UnfamiliarFailures>,
    now: UnixTime,
) -> Result<(), Limited> {
    if !attempt.familiar {
        unfamiliar.map_or(Ok(()), |count| count.allowed(now))?;
    }
    from_source.map_or(Ok(()), |account| account.allowed(now))
}

/// One account's failed passwords from one source: its run of failures and
/// back-off, and its count for the day. Every ledger keeps these and
/// applies the same rules.
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
        within_daily_cap(self.day, self.today, MAX_FAILURES_PER_DAY, now)?;
        if self.blocked_until > now {
            return Err(Limited {
                retry_after: self.blocked_until - now,
            });
        }
        Ok(())
    }

    /// Counts a failure at `now`: from the fifth in a row each one blocks
    /// the account, from this source, for twice as long as the one before.
    pub fn fail(&mut self, now: UnixTime) {
        count_today(&mut self.day, &mut self.today, now);
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

/// One account's failures from unfamiliar sources, all together, in a day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnfamiliarFailures {
    /// The day (Unix days) `today` counts.
    pub day: u64,
    /// Failures from unfamiliar sources on `day`.
    pub today: u32,
}

impl UnfamiliarFailures {
    /// Whether an unfamiliar source may try a password at `now`.
    pub fn allowed(&self, now: UnixTime) -> Result<(), Limited> {
        within_daily_cap(self.day, self.today, MAX_UNFAMILIAR_FAILURES_PER_DAY, now)
    }

    /// Counts a failure from an unfamiliar source at `now`.
    pub fn fail(&mut self, now: UnixTime) {
        count_today(&mut self.day, &mut self.today, now);
    }

    /// Whether forgetting it now loses nothing: no failures today.
    pub fn droppable(&self, now: UnixTime) -> bool {
        self.day != now / 86_400
    }
}

/// `Limited` until the next UTC midnight when `today` failures counted on
/// `day` reach `cap` and `day` is today.
fn within_daily_cap(day: u64, today: u32, cap: u32, now: UnixTime) -> Result<(), Limited> {
    if day == now / 86_400 && today >= cap {
        return Err(Limited {
            retry_after: 86_400 - now % 86_400,
        });
    }
    Ok(())
}

/// Counts one failure at `now` in a day's count (`today` starts again on
/// a new day).
fn count_today(day: &mut u64, today: &mut u32, now: UnixTime) {
    let now_day = now / 86_400;
    if *day != now_day {
        *day = now_day;
        *today = 0;
    }
    *today += 1;
}

/// A token bucket of password attempts for one source: `tokens` refill at
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
