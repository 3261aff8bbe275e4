//! The PostgreSQL store, for several servers on one database: users,
//! sessions, identities and the attempt ledger in tables
//! (`crates/server/migrations/postgres/`), a pool of connections (deadpool), and one
//! more connection that `LISTEN`s for chains ending on any server.
//!
//! - `url.rs`: `--store postgres://...`, shown without its password.
//! - `schema.rs`: versioned migrations, `db status`.
//! - `ops.rs`: [`UserStore`](crate::store::UserStore) in SQL.
//! - `ledger.rs`: the attempt ledger in SQL.
//! - `listen.rs`: revocations from other servers.
//!
//! When the database cannot be reached, calls fail at once with
//! [`StoreError::Unavailable`]; one warning is logged per outage, and the
//! pool is tried again after a back-off that doubles up to
//! [`MAX_RETRY`]. A database that does not answer at all (hung, stopped)
//! is the same: every call has a deadline ([`PgOptions::timeout`],
//! `store_timeout`), past which it fails as `Unavailable`, the store counts
//! as down, and the connection it was using is closed rather than reused.
//! Every connection has TCP keepalive (`connect.rs`).
//!
//! With several hosts in the URL (a primary and its standbys), every new
//! connection goes to whichever is the writable primary (`url.rs`); one
//! that fails, or finds its host read-only, is closed rather than reused
//! (each host is tried within a limit of its own, from the one that
//! answered last, so one that hangs does not hide the others: `hosts.rs`),
//! so after a failover the pool and the listener follow the promoted
//! standby by themselves, with the same back-off.

mod connect;
mod hosts;
mod ledger;
mod listen;
mod ops;
mod outage;
pub mod replication;
mod rows;
pub mod schema;
mod url;

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, Transaction,
};
use tokio::{
    sync::{broadcast, watch},
    time::{Instant, error::Elapsed, timeout_at},
};
use tokio_postgres::{Row, Statement, error::SqlState, tls::NoTls, types::ToSql};

pub use connect::KEEPALIVE_IDLE;
use connect::{CONNECT_TIMEOUT, connect_via, describe, tuned};
use hosts::{Hosts, HostsInTurn};
pub use ledger::PgLedger;
pub use outage::MAX_RETRY;
use outage::Outage;
pub use url::{PgUrl, redact_passwords};

use crate::store::{Lifetimes, Revocation, StoreError};

/// A query parameter.
pub(super) type Param<'a> = dyn ToSql + Sync + 'a;

/// The pool's size unless `store_pool_size` says otherwise.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// Longest a store call may take unless `store_timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a [`PgStore`] uses its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgOptions {
    /// Connections at most in the pool (`store_pool_size`).
    pub pool_size: usize,
    /// Longest one store call may take (`store_timeout`): past it the call
    /// fails as [`StoreError::Unavailable`] and the store counts as down.
    /// The connection that listens for revocations is checked with it too.
    pub timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: DEFAULT_POOL_SIZE,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// The PostgreSQL store: a cheap `Clone` handle.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    url: PgUrl,
    /// Its hosts, and which answered last (the pool's and the listener's).
    hosts: Hosts,
    pool: Pool,
    lifetimes: Lifetimes,
    timeout: Duration,
    outage: Arc<Outage>,
    /// Chains ended anywhere, once the listener runs.
    revocations: OnceLock<broadcast::Sender<Revocation>>,
    /// True while the listener's `LISTEN` is in force.
    listening: watch::Sender<bool>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url`, brings the schema up to date and makes a pool of
    /// at most `pool_size` connections (opened when first needed, so the
    /// store may be opened on one runtime and used on another).
    pub async fn open(
        url: &PgUrl,
        lifetimes: Lifetimes,
        pool_size: usize,
    ) -> Result<Self, StoreError> {
        let options = PgOptions {
            pool_size,
            ..PgOptions::default()
        };
        Self::open_with(url, lifetimes, options).await
    }

    /// [`PgStore::open`] with every option.
    pub async fn open_with(
        url: &PgUrl,
        lifetimes: Lifetimes,
        options: PgOptions,
    ) -> Result<Self, StoreError> {
        let config = tuned(url);
        let hosts = Hosts::of(&config);
        let (mut client, _notes) = connect_via(url, &hosts, CONNECT_TIMEOUT, None).await?;
        schema::migrate(&mut client).await?;
        drop(client);
        let pool = pool(url, config, &hosts, options.pool_size)?;
        Ok(Self {
            inner: Arc::new(Inner {
                url: url.clone(),
                hosts,
                pool,
                lifetimes,
                timeout: options.timeout,
                outage: Arc::default(),
                revocations: OnceLock::new(),
                listening: watch::Sender::new(false),
            }),
        })
    }

    /// Whether the database is known to be unreachable now (a request or
    /// the revocation channel failed, and nothing has succeeded since).
    pub fn is_unreachable(&self) -> bool {
        self.inner.outage.is_down()
    }

    /// Where the database is (without the password).
    pub fn url(&self) -> &PgUrl {
        &self.inner.url
    }

    /// The attempt ledger in this database.
    pub fn ledger(&self) -> PgLedger {
        PgLedger::new(self.clone())
    }

    /// Chains ended on any server; the first call starts listening.
    pub fn revocations(&self) -> broadcast::Receiver<Revocation> {
        self.inner
            .revocations
            .get_or_init(|| {
                let (sender, _) = broadcast::channel(1024);
                tokio::spawn(listen::run(
                    self.inner.url.clone(),
                    self.inner.hosts.clone(),
                    self.inner.timeout,
                    sender.clone(),
                    Arc::clone(&self.inner.outage),
                    self.inner.listening.clone(),
                ));
                tokio::spawn(self.clone().sweep_forever());
                sender
            })
            .subscribe()
    }

    /// Resolves once the listener's `LISTEN` is in force (starting it if
    /// nobody has yet).
    pub async fn listening(&self) {
        let _heard = self.revocations();
        let mut listening = self.inner.listening.subscribe();
        let _ = listening.wait_for(|on| *on).await;
    }

    /// When a call starting now must be over.
    fn deadline(&self) -> Instant {
        Instant::now() + self.inner.timeout
    }

    /// A pooled connection by `deadline`, or `Unavailable` at once while
    /// the database is known down and its next retry is not due.
    async fn client(&self, deadline: Instant) -> Result<Object, StoreError> {
        self.inner.outage.gate()?;
        match timeout_at(deadline, self.inner.pool.get()).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(err)) => {
                let why = match err {
                    PoolError::Backend(err) => describe(&err),
                    other => other.to_string(),
                };
                self.inner.outage.down(&why);
                Err(StoreError::Unavailable(why))
            }
            Err(_) => Err(self.stalled()),
        }
    }

    /// What a call past its deadline fails with; the store counts as down.
    fn stalled(&self) -> StoreError {
        let why = format!(
            "the database did not answer within {} s (store_timeout)",
            self.inner.timeout.as_secs_f32()
        );
        self.inner.outage.down(&why);
        StoreError::Unavailable(why)
    }

    /// The outcome of work done on `client` under a deadline: an answer
    /// (even a refusal) means the database is up; no answer in time, or
    /// `Unavailable` (the connection lost, or its host read-only), closes
    /// the connection instead of giving it back to the pool.
    fn settle<T>(
        &self,
        client: Object,
        outcome: Result<Result<T, StoreError>, Elapsed>,
    ) -> Result<T, StoreError> {
        match outcome {
            Ok(Err(StoreError::Unavailable(why))) => {
                // Lost, or on a host that is read-only now (a primary
                // demoted, a standby): the next connection is made afresh,
                // on whichever host is the writable primary then.
                drop(Object::take(client));
                Err(StoreError::Unavailable(why))
            }
            Ok(result) => {
                self.inner.outage.up();
                result
            }
            Err(_) => {
                drop(Object::take(client));
                Err(self.stalled())
            }
        }
    }

    /// `sql` prepared on `client` (once per connection: the statement is
    /// cached), so each call costs one round trip, not two.
    async fn prepared(&self, client: &Object, sql: &str) -> Result<Statement, StoreError> {
        self.check(client.prepare_cached(sql).await)
    }

    /// Runs `sql` (a cached statement) on a pooled connection, within the
    /// store's deadline: its rows.
    async fn rows(&self, sql: &str, params: &[&Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let deadline = self.deadline();
        let client = self.client(deadline).await?;
        let outcome = timeout_at(deadline, async {
            let statement = self.prepared(&client, sql).await?;
            self.check(client.query(&statement, params).await)
        })
        .await;
        self.settle(client, outcome)
    }

    /// [`PgStore::rows`], for at most one row.
    async fn row(&self, sql: &str, params: &[&Param<'_>]) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, params).await?.into_iter().next())
    }

    /// Runs `sql` (a cached statement) on a pooled connection, within the
    /// store's deadline: the rows it changed.
    async fn run(&self, sql: &str, params: &[&Param<'_>]) -> Result<u64, StoreError> {
        let deadline = self.deadline();
        let client = self.client(deadline).await?;
        let outcome = timeout_at(deadline, async {
            let statement = self.prepared(&client, sql).await?;
            self.check(client.execute(&statement, params).await)
        })
        .await;
        self.settle(client, outcome)
    }

    /// [`PgStore::prepared`] inside a transaction.
    async fn prepared_tx(&self, tx: &Transaction<'_>, sql: &str) -> Result<Statement, StoreError> {
        self.check(tx.prepare_cached(sql).await)
    }

    /// A query's error as a store error; a lost connection counts as an
    /// outage.
    fn check<T>(&self, result: Result<T, tokio_postgres::Error>) -> Result<T, StoreError> {
        result.map_err(|err| {
            let err = db_error(err);
            if let StoreError::Unavailable(why) = &err {
                self.inner.outage.down(why);
            }
            err
        })
    }
}

/// A pool of at most `size` connections to `hosts` (`url`'s, `config`
/// their settings), opened when first needed.
fn pool(
    url: &PgUrl,
    config: tokio_postgres::Config,
    hosts: &Hosts,
    size: usize,
) -> Result<Pool, StoreError> {
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    // Within one call's connect time, every host has a turn.
    let per_host = hosts::share(hosts.len(), CONNECT_TIMEOUT);
    let hosts = hosts.clone();
    let manager = match url.tls().map_err(StoreError::Database)? {
        Some(tls) => {
            let connect = HostsInTurn {
                hosts,
                tls,
                per_host,
            };
            Manager::from_connect(config, connect, manager_config)
        }
        None => {
            let tls = NoTls;
            let connect = HostsInTurn {
                hosts,
                tls,
                per_host,
            };
            Manager::from_connect(config, connect, manager_config)
        }
    };
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|err| StoreError::Database(format!("cannot make the connection pool: {err}")))
}

/// A tokio-postgres error in the store's kinds: the database being down,
/// the connection lost, or its host read-only (a standby, or a primary
/// demoted since the connection was made: the primary is elsewhere now) is
/// [`StoreError::Unavailable`]; anything else is a refused request.
pub(super) fn db_error(err: tokio_postgres::Error) -> StoreError {
    let unavailable = [
        SqlState::READ_ONLY_SQL_TRANSACTION,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::CONNECTION_FAILURE,
        SqlState::CONNECTION_EXCEPTION,
    ];
    let unstorable = [
        SqlState::CHARACTER_NOT_IN_REPERTOIRE,
        SqlState::UNTRANSLATABLE_CHARACTER,
    ];
    match err.as_db_error() {
        Some(db) if unstorable.contains(db.code()) => StoreError::InvalidText(describe(&err)),
        Some(db) if !unavailable.contains(db.code()) => StoreError::Database(describe(&err)),
        _ => StoreError::Unavailable(describe(&err)),
    }
}
