//! The attempt ledger in PostgreSQL, so that limits hold across servers and
//! restarts: each change reads its rows `FOR UPDATE`, applies the same rules
//! as the memory ledger ([`AccountAttempts`], [`UnfamiliarFailures`],
//! [`Bucket`]) and writes them back, in one transaction. Sources are stored
//! as [`Source::address`] (an IPv6 /64 as its prefix). Rows whose
//! bucket has refilled, whose failures are from an earlier day with no
//! back-off in force, are deleted about once a minute, so a flood of
//! addresses leaves nothing behind; failures exist only for real users.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicU64, Ordering},
};

use deadpool_postgres::{Object, Transaction};
use tokio::time::timeout_at;

use super::{
    PgStore,
    rows::{count, int, secs, storable, unix, unmatched},
};
use crate::{
    store::StoreError,
    store::ledger::{
        AccountAttempts, Attempt, AttemptLedger, Bucket, LedgerFuture, Limited, UnfamiliarFailures,
        allowed,
    },
    sys::clock::UnixTime,
    sys::peer::Source,
};

/// Attempt limits shared by every server on the database.
pub struct PgLedger {
    store: PgStore,
    /// When refilled address rows were last deleted.
    swept: AtomicU64,
}

impl std::fmt::Debug for PgLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLedger").finish_non_exhaustive()
    }
}

impl PgLedger {
    pub(super) fn new(store: PgStore) -> Self {
        Self {
            store,
            swept: AtomicU64::new(0),
        }
    }

    /// Takes one attempt from the bucket of `ip`'s source, within the
    /// store's deadline.
    async fn take(
        &self,
        ip: IpAddr,
        per_minute: u32,
        now: UnixTime,
    ) -> Result<Result<(), Limited>, StoreError> {
        self.sweep(now).await?;
        let deadline = self.store.deadline();
        let mut client = self.store.client(deadline).await?;
        let taking = self.take_on(&mut client, ip, per_minute, now);
        let outcome = timeout_at(deadline, taking).await;
        self.store.settle(client, outcome)
    }

    async fn take_on(
        &self,
        client: &mut Object,
        ip: IpAddr,
        per_minute: u32,
        now: UnixTime,
    ) -> Result<Result<(), Limited>, StoreError> {
        let ip = Source::of(ip).address();
        let store = &self.store;
        let tx = store.check(client.transaction().await)?;
        let full = Bucket::full(per_minute, now);
        store.check(
            tx.execute(
                &store
                    .prepared_tx(
                        &tx,
                        "INSERT INTO attempt_addresses (ip, tokens, updated) VALUES ($1, $2, $3)
                 ON CONFLICT (ip) DO NOTHING",
                    )
                    .await?,
                &[&ip, &full.tokens, &secs(now)],
            )
            .await,
        )?;
        let row = store.check(
            tx.query_one(
                &store
                    .prepared_tx(
                        &tx,
                        "SELECT tokens, updated FROM attempt_addresses WHERE ip = $1 FOR UPDATE",
                    )
                    .await?,
                &[&ip],
            )
            .await,
        )?;
        let mut bucket = Bucket {
            tokens: row.get(0),
            updated: unix(row.get(1)),
        };
        let outcome = bucket.take(now, per_minute);
        store.check(
            tx.execute(
                &store
                    .prepared_tx(
                        &tx,
                        "UPDATE attempt_addresses SET tokens = $2, updated = $3 WHERE ip = $1",
                    )
                    .await?,
                &[&ip, &bucket.tokens, &secs(bucket.updated)],
            )
            .await,
        )?;
        store.check(tx.commit().await)?;
        Ok(outcome)
    }

    /// Deletes the rows that mean nothing any more, at most once a minute
    /// per server: sources whose bucket is full again, failures from an
    /// earlier day with no back-off in force.
    async fn sweep(&self, now: UnixTime) -> Result<(), StoreError> {
        let last = self.swept.load(Ordering::Relaxed);
        if now < last + 60
            || self
                .swept
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(());
        }
        // One statement a table, each its own transaction, sources before
        // accounts as a failure locks them: a sweep never holds a row of one
        // table while waiting for the other's, so it cannot deadlock with
        // one.
        let before = secs(now.saturating_sub(60));
        let today = secs(now / 86_400);
        let sql = "DELETE FROM attempt_addresses WHERE updated < $1";
        self.store.run(sql, &[&before]).await?;
        let sql = "DELETE FROM attempt_sources WHERE blocked_until <= $1 AND day < $2";
        self.store.run(sql, &[&secs(now), &today]).await?;
        let sql = "DELETE FROM attempt_accounts WHERE day < $1";
        self.store.run(sql, &[&today]).await.map(drop)
    }

    /// What is known of the account from the attempt's source, and of its
    /// failures from unfamiliar sources.
    async fn known(
        &self,
        attempt: &Attempt<'_>,
    ) -> Result<(Option<AccountAttempts>, Option<UnfamiliarFailures>), StoreError> {
        let sql = "SELECT s.consecutive, s.blocked_until, s.day, s.today, a.day, a.today
                   FROM (SELECT $1::text AS account) k
                   LEFT JOIN attempt_sources s ON s.account = k.account AND s.source = $2
                   LEFT JOIN attempt_accounts a ON a.account = k.account";
        if !storable(attempt.account) {
            return Ok((None, None));
        }
        let source = attempt.source.address();
        let row = unmatched(self.store.row(sql, &[&attempt.account, &source]).await)?;
        let Some(row) = row else {
            return Ok((None, None));
        };
        let from_source = row.get::<_, Option<i32>>(0).map(|_| account_of(&row));
        let unfamiliar = row.get::<_, Option<i64>>(4).map(|day| UnfamiliarFailures {
            day: unix(day),
            today: count(row.get(5)),
        });
        Ok((from_source, unfamiliar))
    }

    /// Applies `change` to the account's row for the attempt's source
    /// (created first when `create`), and counts a failure from an
    /// unfamiliar source when `unfamiliar_at` says when: one transaction,
    /// within the store's deadline.
    async fn modify(
        &self,
        attempt: &Attempt<'_>,
        create: bool,
        change: impl FnOnce(&mut AccountAttempts) + Send,
        unfamiliar_at: Option<UnixTime>,
    ) -> Result<(), StoreError> {
        let deadline = self.store.deadline();
        let mut client = self.store.client(deadline).await?;
        let modified = self.modify_on(&mut client, attempt, create, change, unfamiliar_at);
        let outcome = timeout_at(deadline, modified).await;
        // An account whose name the database cannot hold does not exist.
        unmatched(self.store.settle(client, outcome))
    }

    async fn modify_on(
        &self,
        client: &mut Object,
        attempt: &Attempt<'_>,
        create: bool,
        change: impl FnOnce(&mut AccountAttempts) + Send,
        unfamiliar_at: Option<UnixTime>,
    ) -> Result<(), StoreError> {
        let store = &self.store;
        let tx = store.check(client.transaction().await)?;
        let source = attempt.source.address();
        // The row, locked (an upsert that touches an existing row locks it
        // too, so a sweep cannot delete it in between).
        let sql = match create {
            true => {
                "INSERT INTO attempt_sources
                 (account, source, consecutive, blocked_until, day, today)
                 VALUES ($1, $2, 0, 0, 0, 0) ON CONFLICT (account, source)
                 DO UPDATE SET account = EXCLUDED.account
                 RETURNING consecutive, blocked_until, day, today"
            }
            false => {
                "SELECT consecutive, blocked_until, day, today FROM attempt_sources
                 WHERE account = $1 AND source = $2 FOR UPDATE"
            }
        };
        let select = store.prepared_tx(&tx, sql).await?;
        let row = store.check(tx.query_opt(&select, &[&attempt.account, &source]).await)?;
        let Some(row) = row else {
            return Ok(());
        };
        let mut account = account_of(&row);
        change(&mut account);
        let sql = "UPDATE attempt_sources SET consecutive = $3, blocked_until = $4, day = $5,
                   today = $6 WHERE account = $1 AND source = $2";
        let update = store.prepared_tx(&tx, sql).await?;
        let params: [&super::Param<'_>; 6] = [
            &attempt.account,
            &source,
            &int(account.consecutive),
            &secs(account.blocked_until),
            &secs(account.day),
            &int(account.today),
        ];
        store.check(tx.execute(&update, &params).await)?;
        if let Some(now) = unfamiliar_at {
            self.count_unfamiliar(&tx, attempt.account, now).await?;
        }
        store.check(tx.commit().await)
    }

    /// Counts a failure from an unfamiliar source on `account`, in `tx`.
    async fn count_unfamiliar(
        &self,
        tx: &Transaction<'_>,
        account: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let store = &self.store;
        let sql = "INSERT INTO attempt_accounts (account, consecutive, blocked_until, day, today)
                   VALUES ($1, 0, 0, 0, 0) ON CONFLICT (account)
                   DO UPDATE SET account = EXCLUDED.account RETURNING day, today";
        let select = store.prepared_tx(tx, sql).await?;
        let row = store.check(tx.query_one(&select, &[&account]).await)?;
        let mut failures = UnfamiliarFailures {
            day: unix(row.get(0)),
            today: count(row.get(1)),
        };
        failures.fail(now);
        let sql = "UPDATE attempt_accounts SET day = $2, today = $3 WHERE account = $1";
        let update = store.prepared_tx(tx, sql).await?;
        let params: [&super::Param<'_>; 3] = [&account, &secs(failures.day), &int(failures.today)];
        store.check(tx.execute(&update, &params).await).map(drop)
    }
}

impl AttemptLedger for PgLedger {
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

/// An account's row (`consecutive, blocked_until, day, today`).
fn account_of(row: &tokio_postgres::Row) -> AccountAttempts {
    AccountAttempts {
        consecutive: count(row.get(0)),
        blocked_until: unix(row.get(1)),
        day: unix(row.get(2)),
        today: count(row.get(3)),
    }
}
