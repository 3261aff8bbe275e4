//! The attempt ledger in PostgreSQL, so that limits hold across servers and
//! restarts: each change reads the row `FOR UPDATE`, applies the same rules
//! as the memory ledger ([`AccountAttempts`], [`Bucket`]) and writes it
//! back, in one transaction. Rows of addresses whose bucket has refilled are
//! deleted about once a minute, so a flood of addresses leaves nothing
//! behind; accounts exist only for real users.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicU64, Ordering},
};

use deadpool_postgres::Object;
use tokio::time::timeout_at;

use super::{
    PgStore,
    rows::{count, int, secs, storable, unix, unmatched},
};
use crate::{
    auth::ledger::{AccountAttempts, AttemptLedger, Bucket, LedgerFuture, Limited},
    clock::UnixTime,
    store::StoreError,
};

/// Attempt limits shared by every server on the database.
pub struct PgLedger {
    store: PgStore,
    per_minute: u32,
    /// When refilled address rows were last deleted.
    swept: AtomicU64,
}

impl std::fmt::Debug for PgLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLedger")
            .field("per_minute", &self.per_minute)
            .finish_non_exhaustive()
    }
}

impl PgLedger {
    pub(super) fn new(store: PgStore, per_minute: u32) -> Self {
        Self {
            store,
            per_minute,
            swept: AtomicU64::new(0),
        }
    }

    /// Takes one attempt from `ip`'s bucket, within the store's deadline.
    async fn take(&self, ip: IpAddr, now: UnixTime) -> Result<Result<(), Limited>, StoreError> {
        self.sweep(now).await?;
        let deadline = self.store.deadline();
        let mut client = self.store.client(deadline).await?;
        let outcome = timeout_at(deadline, self.take_on(&mut client, ip, now)).await;
        self.store.settle(client, outcome)
    }

    async fn take_on(
        &self,
        client: &mut Object,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<Result<(), Limited>, StoreError> {
        let store = &self.store;
        let tx = store.check(client.transaction().await)?;
        let full = Bucket::full(self.per_minute, now);
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
        let outcome = bucket.take(now, self.per_minute);
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

    /// Deletes the rows of addresses whose bucket is full again (they mean
    /// nothing), at most once a minute per server.
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
        let sql = "DELETE FROM attempt_addresses WHERE updated < $1";
        let before = secs(now.saturating_sub(60));
        self.store.run(sql, &[&before]).await.map(drop)
    }

    async fn account(&self, user: &str) -> Result<Option<AccountAttempts>, StoreError> {
        let sql = "SELECT consecutive, blocked_until, day, today FROM attempt_accounts
                   WHERE account = $1";
        if !storable(user) {
            return Ok(None);
        }
        let row = unmatched(self.store.row(sql, &[&user]).await)?;
        Ok(row.as_ref().map(account_of))
    }

    /// Applies `change` to `user`'s row, created first when `create`,
    /// within the store's deadline.
    async fn modify(
        &self,
        user: &str,
        create: bool,
        change: impl FnOnce(&mut AccountAttempts) + Send,
    ) -> Result<(), StoreError> {
        let deadline = self.store.deadline();
        let mut client = self.store.client(deadline).await?;
        let outcome = timeout_at(deadline, self.modify_on(&mut client, user, create, change)).await;
        // An account whose name the database cannot hold does not exist.
        unmatched(self.store.settle(client, outcome))
    }

    async fn modify_on(
        &self,
        client: &mut Object,
        user: &str,
        create: bool,
        change: impl FnOnce(&mut AccountAttempts) + Send,
    ) -> Result<(), StoreError> {
        let store = &self.store;
        let tx = store.check(client.transaction().await)?;
        if create {
            store.check(
                tx.execute(
                    &store.prepared_tx(&tx, "INSERT INTO attempt_accounts (account, consecutive, blocked_until, day, today)
                     VALUES ($1, 0, 0, 0, 0) ON CONFLICT (account) DO NOTHING").await?,
                    &[&user],
                )
                .await,
            )?;
        }
        let Some(row) = store.check(
            tx.query_opt(
                &store
                    .prepared_tx(
                        &tx,
                        "SELECT consecutive, blocked_until, day, today FROM attempt_accounts
                 WHERE account = $1 FOR UPDATE",
                    )
                    .await?,
                &[&user],
            )
            .await,
        )?
        else {
            return Ok(());
        };
        let mut account = account_of(&row);
        change(&mut account);
        store.check(
            tx.execute(
                &store.prepared_tx(&tx, "UPDATE attempt_accounts SET consecutive = $2, blocked_until = $3, day = $4,
                 today = $5 WHERE account = $1").await?,
                &[
                    &user,
                    &int(account.consecutive),
                    &secs(account.blocked_until),
                    &secs(account.day),
                    &int(account.today),
                ],
            )
            .await,
        )?;
        store.check(tx.commit().await)
    }
}

impl AttemptLedger for PgLedger {
    fn charge_address(&self, ip: IpAddr, now: UnixTime) -> LedgerFuture<'_, Result<(), Limited>> {
        Box::pin(self.take(ip, now))
    }

    fn check_account<'a>(
        &'a self,
        user: &'a str,
        now: UnixTime,
    ) -> LedgerFuture<'a, Result<(), Limited>> {
        Box::pin(async move {
            Ok(self
                .account(user)
                .await?
                .map_or(Ok(()), |account| account.allowed(now)))
        })
    }

    fn record_failure<'a>(&'a self, user: &'a str, now: UnixTime) -> LedgerFuture<'a, ()> {
        Box::pin(self.modify(user, true, move |account| account.fail(now)))
    }

    fn record_success<'a>(&'a self, user: &'a str) -> LedgerFuture<'a, ()> {
        Box::pin(self.modify(user, false, AccountAttempts::succeed))
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
