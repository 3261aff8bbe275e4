//! The attempt ledger in SQLite, so that limits hold across every server
//! on the file and across restarts: each change reads its rows, applies the
//! same rules as the memory ledger ([`AccountAttempts`],
//! [`UnfamiliarFailures`], [`Bucket`]) and writes them back, in the
//! writer's transaction (which holds the file's write lock, so no other
//! process changes them in between). Sources are stored as
//! [`Source::address`] (an IPv6 /64 as its prefix). What means nothing any
//! more is deleted by the store's sweep (`follow.rs`).

use std::net::IpAddr;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Failure, SqliteStore};
use crate::{
    store::{
        StoreError,
        ledger::{
            AccountAttempts, Attempt, AttemptLedger, Bucket, LedgerFuture, Limited,
            UnfamiliarFailures, allowed,
        },
        sql::{secs, unix},
    },
    sys::{clock::UnixTime, peer::Source},
};

/// Attempt limits shared by every process on the database file.
pub struct SqliteLedger {
    store: SqliteStore,
}

impl std::fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLedger").finish_non_exhaustive()
    }
}

/// A counter from an `INTEGER` column.
fn count(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

impl SqliteLedger {
    pub(super) fn new(store: SqliteStore) -> Self {
        Self { store }
    }

    /// Takes one attempt from the bucket of `ip`'s source.
    async fn take(
        &self,
        ip: IpAddr,
        per_minute: u32,
        now: UnixTime,
    ) -> Result<Result<(), Limited>, StoreError> {
        let ip = Source::of(ip).address().to_string();
        self.store
            .write(move |connection| {
                let sql = "SELECT tokens, updated FROM attempt_addresses WHERE ip = ?1";
                let known = connection
                    .prepare_cached(sql)?
                    .query_row(params![ip], |row| {
                        Ok(Bucket {
                            tokens: row.get(0)?,
                            updated: unix(row.get(1)?),
                        })
                    })
                    .optional()?;
                let mut bucket = known.unwrap_or_else(|| Bucket::full(per_minute, now));
                let outcome = bucket.take(now, per_minute);
                let sql = "INSERT INTO attempt_addresses (ip, tokens, updated) VALUES (?1, ?2, ?3)
                           ON CONFLICT (ip) DO UPDATE SET tokens = excluded.tokens,
                           updated = excluded.updated";
                connection.prepare_cached(sql)?.execute(params![
                    ip,
                    bucket.tokens,
                    secs(bucket.updated)
                ])?;
                Ok(outcome)
            })
            .await
    }

    /// What is known of the account from the attempt's source, and of its
    /// failures from unfamiliar sources.
    async fn known(
        &self,
        attempt: &Attempt<'_>,
    ) -> Result<(Option<AccountAttempts>, Option<UnfamiliarFailures>), StoreError> {
        let account = attempt.account.to_owned();
        let source = attempt.source.address().to_string();
        self.store
            .read(move |connection| {
                let from_source = from_source(connection, &account, &source)?;
                let sql = "SELECT day, today FROM attempt_accounts WHERE account = ?1";
                let unfamiliar = connection
                    .prepare_cached(sql)?
                    .query_row(params![account], |row| {
                        Ok(UnfamiliarFailures {
                            day: unix(row.get(0)?),
                            today: count(row.get(1)?),
                        })
                    })
                    .optional()?;
                Ok((from_source, unfamiliar))
            })
            .await
    }

    /// Applies `change` to the account's row for the attempt's source
    /// (created first when `create`), and counts a failure from an
    /// unfamiliar source when `unfamiliar_at` says when: one transaction.
    async fn modify(
        &self,
        attempt: &Attempt<'_>,
        create: bool,
        change: impl FnOnce(&mut AccountAttempts) + Send + 'static,
        unfamiliar_at: Option<UnixTime>,
    ) -> Result<(), StoreError> {
        let account = attempt.account.to_owned();
        let source = attempt.source.address().to_string();
        self.store
            .write(move |connection| {
                let known = from_source(connection, &account, &source)?;
                let Some(mut attempts) = known.or(create.then(AccountAttempts::default)) else {
                    return Ok(());
                };
                change(&mut attempts);
                let sql = "INSERT INTO attempt_sources
                           (account, source, consecutive, blocked_until, day, today)
                           VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (account, source)
                           DO UPDATE SET consecutive = excluded.consecutive,
                           blocked_until = excluded.blocked_until, day = excluded.day,
                           today = excluded.today";
                connection.prepare_cached(sql)?.execute(params![
                    account,
                    source,
                    attempts.consecutive,
                    secs(attempts.blocked_until),
                    secs(attempts.day),
                    attempts.today
                ])?;
                if let Some(now) = unfamiliar_at {
                    count_unfamiliar(connection, &account, now)?;
                }
                Ok(())
            })
            .await
    }
}

/// The account's failures from `source`, if any are kept.
fn from_source(
    connection: &Connection,
    account: &str,
    source: &str,
) -> Result<Option<AccountAttempts>, Failure> {
    let sql = "SELECT consecutive, blocked_until, day, today FROM attempt_sources
               WHERE account = ?1 AND source = ?2";
    Ok(connection
        .prepare_cached(sql)?
        .query_row(params![account, source], |row| {
            Ok(AccountAttempts {
                consecutive: count(row.get(0)?),
                blocked_until: unix(row.get(1)?),
                day: unix(row.get(2)?),
                today: count(row.get(3)?),
            })
        })
        .optional()?)
}

/// Counts a failure from an unfamiliar source on `account`.
fn count_unfamiliar(connection: &Connection, account: &str, now: UnixTime) -> Result<(), Failure> {
    let sql = "SELECT day, today FROM attempt_accounts WHERE account = ?1";
    let mut failures = connection
        .prepare_cached(sql)?
        .query_row(params![account], |row| {
            Ok(UnfamiliarFailures {
                day: unix(row.get(0)?),
                today: count(row.get(1)?),
            })
        })
        .optional()?
        .unwrap_or_default();
    failures.fail(now);
    let sql = "INSERT INTO attempt_accounts (account, day, today) VALUES (?1, ?2, ?3)
               ON CONFLICT (account) DO UPDATE SET day = excluded.day, today = excluded.today";
    connection.prepare_cached(sql)?.execute(params![
        account,
        secs(failures.day),
        failures.today
    ])?;
    Ok(())
}

impl AttemptLedger for SqliteLedger {
    fn charge_address(
        &self,
        ip: IpAddr,
        per_minute: u32,
        now: UnixTime,
    ) -> LedgerFuture<'_, Result<(), Limited>> {
        Box::pin(self.take(ip, per_minute, now))
    }

    fn check_account<'a>(
        &'a self,
        attempt: Attempt<'a>,
        now: UnixTime,
    ) -> LedgerFuture<'a, Result<(), Limited>> {
        Box::pin(async move {
            let (from_source, unfamiliar) = self.known(&attempt).await?;
            Ok(allowed(
                &attempt,
                from_source.as_ref(),
                unfamiliar.as_ref(),
                now,
            ))
        })
    }

    fn record_failure<'a>(&'a self, attempt: Attempt<'a>, now: UnixTime) -> LedgerFuture<'a, ()> {
        let unfamiliar_at = (!attempt.familiar).then_some(now);
        Box::pin(async move {
            let fail = move |account: &mut AccountAttempts| account.fail(now);
            self.modify(&attempt, true, fail, unfamiliar_at).await
        })
    }

    fn record_success<'a>(&'a self, attempt: Attempt<'a>) -> LedgerFuture<'a, ()> {
        Box::pin(async move {
            self.modify(&attempt, false, AccountAttempts::succeed, None)
                .await
        })
    }
}
