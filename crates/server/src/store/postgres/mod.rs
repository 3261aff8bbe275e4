//! The PostgreSQL store, for several servers on one database: users,
//! sessions, identities and the attempt ledger in tables
//! (`crates/server/migrations/`), a pool of connections (deadpool), and one
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
//! [`MAX_RETRY`].

mod ledger;
mod listen;
mod ops;
mod rows;
pub mod schema;
mod url;

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, Transaction,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_postgres::{
    Client, Notification, Row, Statement, error::SqlState, tls::NoTls, types::ToSql,
};
use tracing::{info, warn};

pub use ledger::PgLedger;
pub use url::{PgUrl, redact_passwords};

use crate::{
    store::{Lifetimes, Revocation, StoreError},
    sync::lock,
};

/// A query parameter.
pub(super) type Param<'a> = dyn ToSql + Sync + 'a;

/// Longest wait between attempts to reach a database that is down.
pub const MAX_RETRY: Duration = Duration::from_secs(1);
/// First wait after the database is found down.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Time to connect, and to wait for a free connection from the pool.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The pool's size unless `store_pool_size` says otherwise.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// The PostgreSQL store: a cheap `Clone` handle.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    url: PgUrl,
    pool: Pool,
    lifetimes: Lifetimes,
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
        let (mut client, _) = connect(url).await?;
        schema::migrate(&mut client).await?;
        drop(client);
        let mut config = url.config().clone();
        config.connect_timeout(CONNECT_TIMEOUT);
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match url.tls().map_err(StoreError::Database)? {
            Some(tls) => Manager::from_config(config, tls, manager_config),
            None => Manager::from_config(config, NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|err| {
                StoreError::Database(format!("cannot make the connection pool: {err}"))
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                url: url.clone(),
                pool,
                lifetimes,
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

    /// The attempt ledger in this database, `per_minute` password attempts
    /// a minute per address.
    pub fn ledger(&self, per_minute: u32) -> PgLedger {
        PgLedger::new(self.clone(), per_minute)
    }

    /// Chains ended on any server; the first call starts listening.
    pub fn revocations(&self) -> broadcast::Receiver<Revocation> {
        self.inner
            .revocations
            .get_or_init(|| {
                let (sender, _) = broadcast::channel(1024);
                tokio::spawn(listen::run(
                    self.inner.url.clone(),
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

    /// A pooled connection, or `Unavailable` at once while the database is
    /// known down and its next retry is not due.
    async fn client(&self) -> Result<Object, StoreError> {
        self.inner.outage.gate()?;
        match self.inner.pool.get().await {
            Ok(client) => {
                self.inner.outage.up();
                Ok(client)
            }
            Err(err) => {
                let why = match err {
                    PoolError::Backend(err) => schema::describe(&err),
                    other => other.to_string(),
                };
                self.inner.outage.down(&why);
                Err(StoreError::Unavailable(why))
            }
        }
    }

    /// `sql` prepared on `client` (once per connection: the statement is
    /// cached), so each call costs one round trip, not two.
    async fn prepared(&self, client: &Object, sql: &str) -> Result<Statement, StoreError> {
        self.check(client.prepare_cached(sql).await)
    }

    /// Runs `sql` (a cached statement) on a pooled connection: its rows.
    async fn rows(&self, sql: &str, params: &[&Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let statement = self.prepared(&client, sql).await?;
        self.check(client.query(&statement, params).await)
    }

    /// [`PgStore::rows`], for at most one row.
    async fn row(&self, sql: &str, params: &[&Param<'_>]) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, params).await?.into_iter().next())
    }

    /// Runs `sql` (a cached statement) on a pooled connection: the rows it
    /// changed.
    async fn run(&self, sql: &str, params: &[&Param<'_>]) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = self.prepared(&client, sql).await?;
        self.check(client.execute(&statement, params).await)
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

/// A plain connection to `url` (for migrations and `LISTEN`), driven on its
/// own task; its notifications arrive on the receiver, which closes when the
/// connection is lost.
pub(super) async fn connect(
    url: &PgUrl,
) -> Result<(Client, mpsc::UnboundedReceiver<Notification>), StoreError> {
    let mut config = url.config().clone();
    config.connect_timeout(CONNECT_TIMEOUT);
    let unreachable = |err: tokio_postgres::Error| {
        StoreError::Unavailable(format!(
            "cannot connect to {url}: {}",
            schema::describe(&err)
        ))
    };
    let (sender, receiver) = mpsc::unbounded_channel();
    let client = match url.tls().map_err(StoreError::Database)? {
        Some(tls) => {
            let (client, connection) = config.connect(tls).await.map_err(unreachable)?;
            tokio::spawn(listen::drive(connection, sender));
            client
        }
        None => {
            let (client, connection) = config.connect(NoTls).await.map_err(unreachable)?;
            tokio::spawn(listen::drive(connection, sender));
            client
        }
    };
    Ok((client, receiver))
}

/// A tokio-postgres error in the store's kinds: the database being down or
/// the connection lost is [`StoreError::Unavailable`]; anything else is a
/// refused request.
pub(super) fn db_error(err: tokio_postgres::Error) -> StoreError {
    let unavailable = [
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::CONNECTION_FAILURE,
        SqlState::CONNECTION_EXCEPTION,
    ];
    match err.as_db_error() {
        Some(db) if !unavailable.contains(db.code()) => {
            StoreError::Database(schema::describe(&err))
        }
        _ => StoreError::Unavailable(schema::describe(&err)),
    }
}

/// Whether the database is down, since when, and when to try again.
#[derive(Default)]
pub(super) struct Outage {
    down: Mutex<Option<Down>>,
}

struct Down {
    since: Instant,
    retry_at: Instant,
    wait: Duration,
}

impl Outage {
    pub(super) fn gate(&self) -> Result<(), StoreError> {
        match &*lock(&self.down) {
            Some(down) if Instant::now() < down.retry_at => Err(StoreError::Unavailable(
                "the database is down; retrying".into(),
            )),
            _ => Ok(()),
        }
    }

    pub(super) fn down(&self, why: &str) {
        let now = Instant::now();
        let mut down = lock(&self.down);
        match &mut *down {
            Some(down) => {
                down.wait = (down.wait * 2).min(MAX_RETRY);
                down.retry_at = now + down.wait;
            }
            None => {
                warn!(error = %why, "the database is unreachable: new handshakes get `unavailable` until it is back; established sessions go on");
                *down = Some(Down {
                    since: now,
                    retry_at: now + FIRST_RETRY,
                    wait: FIRST_RETRY,
                });
            }
        }
    }

    pub(super) fn up(&self) {
        if let Some(down) = lock(&self.down).take() {
            info!(
                outage_ms = down.since.elapsed().as_millis() as u64,
                "the database is reachable again"
            );
        }
    }

    /// Whether the database is known down now.
    pub(super) fn is_down(&self) -> bool {
        lock(&self.down).is_some()
    }
}
