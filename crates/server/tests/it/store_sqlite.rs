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

use std::{os::unix::fs::PermissionsExt, path::Path, time::Duration};

use echo_server::store::{Revocation, StoreError, TokenHash, UserStore};
use echo_testkit::conformance::user;

async fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, LIFETIMES).await.unwrap()
}

/// The next chain `revocations` announces, within `limit`.
async fn next_chain(
    revocations: &mut tokio::sync::broadcast::Receiver<Revocation>,
    limit: Duration,
) -> Option<uuid::Uuid> {
    tokio::time::timeout(limit, async {
        loop {
            match revocations.recv().await {
                Ok(Revocation::Chain(chain)) => return Some(chain),
                Ok(Revocation::Resync) => {}
                Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test]
async fn a_chain_ended_by_one_process_is_heard_by_the_others_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    let (one, other) = (open(&path).await, open(&path).await);
    one.create_user(user("ann")).await.unwrap();
    let mut heard = other.revocations();
    for (i, end) in ["revoke", "reuse", "passwd", "remove"]
        .into_iter()
        .enumerate()
    {
        if end == "remove" {
            // A removed user's chains end through the foreign key's cascade.
            one.create_user(user("bob")).await.unwrap();
        }
        let name = if end == "remove" { "bob" } else { "ann" };
        let first = TokenHash::of(&format!("t{i}"));
        let chain = one.create_session(first, name, 10).await.unwrap().chain;
        match end {
            "revoke" => assert!(one.revoke_session(chain).await.unwrap()),
            "reuse" => {
                one.rotate_session(first, TokenHash::of(&format!("u{i}")), 11)
                    .await
                    .unwrap();
                one.rotate_session(first, TokenHash::of(&format!("v{i}")), 12)
                    .await
                    .unwrap();
            }
            "passwd" => one
                .set_password("ann", "$argon2id$new".into())
                .await
                .unwrap(),
            _ => one.remove_user("bob").await.unwrap(),
        }
        assert_eq!(
            next_chain(&mut heard, Duration::from_secs(1)).await,
            Some(chain),
            "{end}"
        );
    }
}

#[tokio::test]
async fn changes_from_many_callers_at_once_are_all_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let store = open(&path).await;
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..300 {
            let store = store.clone();
            calls.spawn(async move { store.create_user(user(&format!("u{i}"))).await });
        }
        while let Some(done) = calls.join_next().await {
            done.unwrap().unwrap();
        }
    }
    let reopened = open(&path).await;
    assert_eq!(reopened.users().await.unwrap().len(), 300);
}

#[tokio::test]
async fn the_database_is_readable_by_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join(DB_FILE);
    let store = open(&path).await;
    store.create_user(user("ann")).await.unwrap();
    for file in [path.clone(), path.with_extension("db-wal")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    std::fs::write(
        &path,
        b"this is not a SQLite database, just text in its place".repeat(100),
    )
    .unwrap();
    let err = SqliteStore::open(&path, LIFETIMES).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    // Nothing was written over it.
    assert!(std::fs::read(&path).unwrap().starts_with(b"this is not"));
}

#[tokio::test]
async fn expired_chains_are_swept_without_being_announced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    let store = open(&path).await;
    store.create_user(user("ann")).await.unwrap();
    let old = store
        .create_session(TokenHash::of("old"), "ann", 10)
        .await
        .unwrap();
    let new = store
        .create_session(TokenHash::of("new"), "ann", 500)
        .await
        .unwrap();
    let mut heard = store.revocations();
    let (chains, _) = store.sweep(10 + LIFETIMES.idle).await.unwrap();
    assert_eq!(chains, 1);
    assert_eq!(
        store
            .chains_alive(vec![old.chain, new.chain])
            .await
            .unwrap(),
        vec![new.chain]
    );
    assert_eq!(
        next_chain(&mut heard, Duration::from_millis(500)).await,
        None
    );
}
