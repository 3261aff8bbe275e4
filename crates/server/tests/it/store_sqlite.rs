//! The SQLite store: the conformance suite every store passes, then what is
//! its own: several processes on one file, revocations heard across them,
//! a damaged file, the file's mode.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use echo_server::store::{SqliteStore, ledger::AttemptLedger, sqlite::DB_FILE};
use echo_testkit::conformance::{Backend, LIFETIMES};

/// SQLite stores on one file in a temporary directory.
struct SqliteBackend(tempfile::TempDir);

impl Backend for SqliteBackend {
    type Store = SqliteStore;

    async fn open(&self) -> SqliteStore {
        SqliteStore::open(&self.0.path().join(DB_FILE), LIFETIMES)
            .await
            .unwrap()
    }

    fn ledger(&self, store: &SqliteStore, per_minute: u32) -> Arc<dyn AttemptLedger> {
        Arc::new(store.ledger(per_minute))
    }
}

echo_testkit::conformance_suite!(Some(SqliteBackend(tempfile::tempdir().unwrap())));
