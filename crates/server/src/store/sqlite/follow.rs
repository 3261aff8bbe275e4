//! What other processes on the file did, heard here: SQLite has no LISTEN,
//! so every [`POLL`] the store reads the `revocations` rows added since the
//! last it saw (a trigger adds one per chain that ends, in the transaction
//! that ends it) and announces each chain. A poll that fails is retried at
//! the next; after one, a [`Revocation::Resync`] makes the server check
//! every live chain. The same read takes the file's count of changes to
//! the names known by address (`identities.rs`). The same task sweeps what
//! has expired about once a minute.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use rusqlite::{self, Connection, params};
use tokio::time::{Instant, MissedTickBehavior};

use super::{Failure, Inner, SqliteStore, identities::changes_on, rows::chain_of};
use crate::{
    store::{EndCause, FAMILIAR_SOURCE_SECS, Lifetimes, Revocation, StoreError, sql::secs},
    sys::clock::{Clock, SystemClock, UnixTime},
};

/// How often the revocations table is read: a revocation reaches the live
/// connections of every server on the file within this (and a read).
pub const POLL: Duration = Duration::from_millis(100);
/// How often what has expired is deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How long a revocation row is kept for servers to read.
const KEEP_REVOCATIONS_SECS: u64 = 3600;

/// Starts following from where the store was opened, on the current
/// runtime, until the store is dropped.
pub fn start(store: &SqliteStore) {
    let last = store.inner.opened_at;
    tokio::spawn(follow(Arc::downgrade(&store.inner), last));
}

/// The newest revocation on file now.
pub async fn newest_on(readers: &super::Readers) -> Result<i64, StoreError> {
    readers.read(newest).await
}

fn newest(connection: &Connection) -> Result<i64, Failure> {
    let sql = "SELECT coalesce(max(seq), 0) FROM revocations";
    Ok(connection.query_row(sql, [], |row| row.get(0))?)
}

/// Polls until the store is dropped.
async fn follow(store: Weak<Inner>, mut last: i64) {
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    let mut missed = false;
    let mut heard_at = Instant::now();
    loop {
        poll.tick().await;
        let Some(inner) = store.upgrade() else { return };
        let store = SqliteStore { inner };
        let read =
            store.read(move |connection| Ok((since(connection, last)?, changes_on(connection)?)));
        match read.await {
            Ok((rows, identity_changes)) => {
                store.inner.identities.counter_read(identity_changes);
                // Rows are kept an hour: after a longer pause (a stopped
                // process), some may be gone unread.
                let paused = heard_at.elapsed() > Duration::from_secs(KEEP_REVOCATIONS_SECS / 2);
                heard_at = Instant::now();
                if std::mem::take(&mut missed) || paused {
                    let _ = store.inner.revocations.send(Revocation::Resync);
                }
                for (seq, family, cause) in rows {
                    last = seq;
                    let cause = cause.as_deref().and_then(EndCause::parse);
                    let ended = Revocation::Chain(chain_of(&family), cause);
                    let _ = store.inner.revocations.send(ended);
                }
            }
            Err(err) => {
                if !missed {
                    tracing::warn!(error = %err, "cannot read the store's revocations; retrying");
                }
                missed = true;
            }
        }
        if Instant::now() >= next_sweep {
            next_sweep = Instant::now() + SWEEP_EVERY;
            store.sweep_logged().await;
        }
    }
}

/// A revocation row: its sequence number, chain and cause.
type Ended = (i64, String, Option<String>);

/// The revocations after `last`, in order.
fn since(connection: &Connection, last: i64) -> Result<Vec<Ended>, Failure> {
    let sql = "SELECT seq, family, cause FROM revocations WHERE seq > ?1 ORDER BY seq";
    let mut statement = connection.prepare_cached(sql)?;
    let rows = statement
        .query_map(params![last], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

impl SqliteStore {
    /// Deletes, at `now`: the chains that have expired (without announcing
    /// them as revoked: a connection they authenticated goes on, as on
    /// PostgreSQL), the addresses unseen for their lifetime, the familiar
    /// sources not logged in from for [`FAMILIAR_SOURCE_SECS`], revocation
    /// rows every server has read, and the ledger's rows that protect
    /// nothing any more. Returns how many chains and addresses.
    pub async fn sweep(&self, now: UnixTime) -> Result<(usize, usize), StoreError> {
        let lifetimes = self.inner.lifetimes;
        self.write(move |connection| sweep_on(connection, lifetimes, now))
            .await
    }

    async fn sweep_logged(&self) {
        match self.sweep(SystemClock.now()).await {
            Ok((chains, addresses)) if chains + addresses > 0 => {
                tracing::info!(chains, addresses, "expired sessions and addresses deleted");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "cannot delete expired sessions"),
        }
    }
}

fn sweep_on(
    connection: &Connection,
    lifetimes: Lifetimes,
    now: UnixTime,
) -> Result<(usize, usize), Failure> {
    let before = newest(connection)?;
    let sql = "DELETE FROM sessions WHERE min(created + ?2, last_used + ?3) <= ?1";
    let chains = connection.execute(
        sql,
        params![secs(now), secs(lifetimes.absolute), secs(lifetimes.idle)],
    )?;
    connection.execute("DELETE FROM revocations WHERE seq > ?1", params![before])?;
    let forgotten = secs(now.saturating_sub(lifetimes.identity));
    let addresses = connection.execute(
        "DELETE FROM identities WHERE seen <= ?1",
        params![forgotten],
    )?;
    let unfamiliar = secs(now.saturating_sub(FAMILIAR_SOURCE_SECS));
    connection.execute(
        "DELETE FROM familiar_sources WHERE seen <= ?1",
        params![unfamiliar],
    )?;
    let read = secs(now.saturating_sub(KEEP_REVOCATIONS_SECS));
    connection.execute("DELETE FROM revocations WHERE at < ?1", params![read])?;
    let (refilled, today) = (secs(now.saturating_sub(60)), secs(now / 86_400));
    connection.execute(
        "DELETE FROM attempt_addresses WHERE updated < ?1",
        params![refilled],
    )?;
    connection.execute(
        "DELETE FROM attempt_sources WHERE blocked_until <= ?1 AND day < ?2",
        params![secs(now), today],
    )?;
    connection.execute(
        "DELETE FROM attempt_accounts WHERE day < ?1",
        params![today],
    )?;
    Ok((chains, addresses))
}
