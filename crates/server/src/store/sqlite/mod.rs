//! The SQLite store, the embedded default: users, sessions, identities and
//! the attempt ledger in one database file (`DATA_DIR/echo.db`) that any
//! number of servers and admin commands on one machine share.
//!
//! - `schema.rs`: versioned migrations (`crates/server/migrations/sqlite/`)
//!   and the connection settings (WAL, `synchronous = FULL`, foreign keys,
//!   a busy timeout).
//! - `writer.rs`: every change goes through one writer thread, which
//!   commits the changes waiting at once in one transaction (group commit)
//!   and answers each only after the commit.
//! - `ops.rs`: [`UserStore`](crate::store::UserStore) in SQL; reads go to
//!   the reading connections (`readers.rs`: a few threads, each with its
//!   own connection), which WAL lets run beside the writer and other
//!   processes.
//! - `ledger.rs`: the attempt ledger in SQL, shared like the rest.
//! - `import.rs`, `journal/`: the previous release's journal store, read
//!   and imported.
//! - `follow.rs`: chains ended by another process (SQLite has no LISTEN:
//!   the `revocations` table, read every 100 ms by the process that listens),
//!   and the sweep of what has expired.

mod follow;
mod identities;
mod import;
mod journal;
mod ledger;
mod ops;
mod readers;
mod rows;
mod schema;
mod writer;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::sync::broadcast;

pub use import::{Imported, imported_name};
pub use journal::{JOURNAL_FILE, LOCK_FILE};
pub use ledger::SqliteLedger;
use readers::Readers;
pub use schema::DB_FILE;
pub use schema::status;
use writer::Writer;

use crate::store::{Lifetimes, Revocation, StoreError};

/// Reading connections at most.
const READERS: usize = 4;
/// How long a call waits for another process's write lock before it fails
/// as unavailable.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store: a cheap `Clone` handle.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    readers: Readers,
    writer: Writer,
    /// Names read by address, kept while the follower runs.
    identities: identities::IdentityCache,
    lifetimes: Lifetimes,
    /// Chains ended in any process on this file.
    revocations: broadcast::Sender<Revocation>,
    /// The newest revocation on file when the store was opened: where the
    /// follower starts.
    opened_at: i64,
    /// Set once the follower runs (started by the first `revocations`
    /// call, on that caller's runtime: an admin command that only changes
    /// the file starts none).
    following: std::sync::Once,
    /// What was imported at open, and where the journal went.
    imported: std::sync::OnceLock<(Imported, PathBuf)>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, brings its schema up to
    /// date, and starts the writer.
    pub async fn open(path: &Path, lifetimes: Lifetimes) -> Result<Self, StoreError> {
        let path = path.to_owned();
        let writer = Writer::start(&path).await?;
        let readers = Readers::open(&path, READERS).await?;
        let (revocations, _) = broadcast::channel(1024);
        let opened_at = follow::newest_on(&readers).await?;
        let store = Self {
            inner: Arc::new(Inner {
                path,
                readers,
                writer,
                identities: identities::IdentityCache::default(),
                lifetimes,
                revocations,
                opened_at,
                following: std::sync::Once::new(),
                imported: std::sync::OnceLock::new(),
            }),
        };
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The journal imported by [`SqliteStore::import_journal`] through
    /// this handle, and what it was renamed to.
    pub fn imported(&self) -> Option<(Imported, PathBuf)> {
        self.inner.imported.get().cloned()
    }

    /// How many changes this process committed through the store (a
    /// change that failed, or was refused, is not one).
    pub fn changes(&self) -> u64 {
        self.inner.writer.committed()
    }

    /// The attempt ledger in this database.
    pub fn ledger(&self) -> SqliteLedger {
        SqliteLedger::new(self.clone())
    }

    /// Chains ended in any process on this file (this one included) since
    /// the store was opened. The first call starts following the file (and
    /// sweeping it) on the caller's Tokio runtime.
    pub fn revocations(&self) -> broadcast::Receiver<Revocation> {
        let heard = self.inner.revocations.subscribe();
        self.inner.following.call_once(|| follow::start(self));
        heard
    }

    /// Runs `read` on a reading connection.
    async fn read<R: Send + 'static>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> Result<R, Failure> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.inner.readers.read(read).await
    }

    /// Runs `change` in the writer's next transaction; returns once that is
    /// committed.
    async fn write<R: Send + 'static>(
        &self,
        change: impl FnOnce(&rusqlite::Connection) -> Result<R, Failure> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.inner.writer.write(change).await
    }
}

/// Why a read or change failed: the store's own answer (a name taken, no
/// such user), or SQLite's error, turned into a [`StoreError`] by
/// [`failure`] with the file's name.
pub(super) enum Failure {
    Store(StoreError),
    Sqlite(rusqlite::Error),
}

impl Failure {
    fn into_store_error(self, path: &Path) -> StoreError {
        match self {
            Failure::Store(err) => err,
            Failure::Sqlite(err) => failure(path, err),
        }
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(err: rusqlite::Error) -> Self {
        Failure::Sqlite(err)
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure::Store(err)
    }
}

/// A SQLite error as a [`StoreError`]: a busy database is unavailable (try
/// again), a full disk or failed I/O is an I/O error on the file, a damaged
/// file is corrupt. Values are bound as parameters, so no message carries
/// a secret.
pub(super) fn failure(path: &Path, err: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    let what = path.display().to_string();
    let code = err.sqlite_error_code();
    match code {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(format!("{what} is busy: {err}"))
        }
        Some(ErrorCode::DiskFull) => StoreError::Io {
            what,
            source: std::io::Error::new(std::io::ErrorKind::StorageFull, err.to_string()),
        },
        Some(
            ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied,
        ) => StoreError::Io {
            what,
            source: std::io::Error::other(err.to_string()),
        },
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt {
            what,
            message: err.to_string(),
        },
        _ => StoreError::Database(err.to_string()),
    }
}
