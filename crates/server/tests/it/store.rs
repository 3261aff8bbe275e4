//! The SQLite store: the conformance suite every store passes, then what is
//! its own: several processes on one file, revocations heard across them,
//! a damaged file, the file's mode, the previous release's journal
//! imported.
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

    fn ledger(&self, store: &SqliteStore) -> Arc<dyn AttemptLedger> {
        Arc::new(store.ledger())
    }
}

echo_testkit::conformance_suite!(Some(SqliteBackend(tempfile::tempdir().unwrap())));

use std::{os::unix::fs::PermissionsExt, path::Path, time::Duration};

use echo_server::store::{EndCause, Revocation, StoreError, TokenHash, UserStore};
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
                Ok(Revocation::Chain(chain, _)) => return Some(chain),
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
            "revoke" => assert!(one.revoke_session(chain, EndCause::Operator).await.unwrap()),
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

/// A copy of the previous release's journal (`tests/fixtures/journal-0.1`)
/// in a fresh data directory.
fn old_journal() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-0.1/store.journal");
    std::fs::copy(fixture, dir.path().join("store.journal")).unwrap();
    dir
}

#[tokio::test]
async fn the_previous_releases_journal_is_imported_whole() {
    use echo_server::store::Rotation;
    let dir = old_journal();
    let store = open(&dir.path().join(DB_FILE)).await;
    let imported = store.import_beside(dir.path()).await.unwrap().unwrap();
    assert_eq!(
        (
            imported.users,
            imported.sessions,
            imported.tokens,
            imported.identities,
            imported.familiar
        ),
        (3, 3, 5, 2, 2),
        "{imported:?}"
    );
    assert!(!dir.path().join("store.journal").exists());
    assert!(dir.path().join("store.journal.imported").exists());
    // Users with their hashes, any spelling; the torn last line is not one.
    let names = echo_testkit::conformance::user_names(&store).await;
    assert_eq!(names, ["Zoë", "ann", "bob"]);
    assert!(
        store
            .user("ZOË")
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .starts_with("$argon2id$")
    );
    // The current token resumes; one rotated away is reuse, and ends it.
    let now = 1_765_000_010;
    let next = TokenHash::of("ann-4");
    assert!(matches!(
        store
            .rotate_session(TokenHash::of("ann-3"), next, now)
            .await
            .unwrap(),
        Rotation::Rotated(_)
    ));
    assert!(matches!(
        store
            .rotate_session(TokenHash::of("ann-1"), TokenHash::of("x"), now)
            .await
            .unwrap(),
        Rotation::Reused { .. }
    ));
    assert!(matches!(
        store
            .rotate_session(TokenHash::of("bob-gone"), TokenHash::of("y"), now)
            .await
            .unwrap(),
        Rotation::Unknown
    ));
    assert_eq!(store.sessions("ann", now).await.unwrap().len(), 1);
    // Identities and familiar sources (an IPv6 /64 as one source).
    let ip: std::net::IpAddr = "2001:db8::7".parse().unwrap();
    assert_eq!(store.identity(ip, now).await.unwrap().unwrap().name, "Zoë");
    let bob_at: std::net::IpAddr = "2001:db8:1:2::1234".parse().unwrap();
    assert_eq!(
        store.familiar_since("bob", bob_at, now).await.unwrap(),
        Some(1_765_000_000)
    );
    // Done once: a second start finds nothing to import.
    assert_eq!(store.import_beside(dir.path()).await.unwrap(), None);
}

#[tokio::test]
async fn a_journal_still_locked_by_an_old_server_is_not_imported() {
    let dir = old_journal();
    let lock = std::fs::File::create(dir.path().join("store.lock")).unwrap();
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let store = open(&dir.path().join(DB_FILE)).await;
    let err = store.import_beside(dir.path()).await.unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
    assert!(dir.path().join("store.journal").exists());
    assert!(store.users().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_journal_whose_names_the_database_has_is_refused_whole() {
    let dir = old_journal();
    let store = open(&dir.path().join(DB_FILE)).await;
    store.create_user(user("bob")).await.unwrap();
    // Beside a database with data: left alone at start ...
    assert_eq!(store.import_beside(dir.path()).await.unwrap(), None);
    // ... and by hand, refused as a whole.
    let err = store
        .import_journal(&dir.path().join("store.journal"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NameTaken(name) if name == "bob"),
        "{err:?}"
    );
    assert_eq!(store.users().await.unwrap().len(), 1);
    assert!(dir.path().join("store.journal").exists());
}

#[test]
fn the_store_can_be_dropped_after_its_runtime() {
    // An admin command opens the store on a small runtime, and drops it
    // after the runtime is gone.
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(async {
        let store = open(&dir.path().join(DB_FILE)).await;
        store.create_user(user("ann")).await.unwrap();
        assert_eq!(store.users().await.unwrap().len(), 1);
        store
    });
    drop(runtime);
    drop(store);
}

#[tokio::test]
async fn the_store_is_chosen_from_the_configuration() {
    use echo_server::{ServerConfig, store::Store};
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::default();
    config.store.data_dir = dir.path().join("data");
    let store = echo_server::store::open(&config.store_location(), LIFETIMES)
        .await
        .unwrap();
    assert!(matches!(store, Store::Sqlite(_)), "SQLite is the default");
    store.create_user(user("ann")).await.unwrap();
    drop(store);
    let reopened = open(&dir.path().join("data").join(DB_FILE)).await;
    assert_eq!(reopened.users().await.unwrap()[0].name, "ann");
}

#[test]
fn debug_output_shows_no_hash() {
    let shown = format!("{:?} {:?}", user("ann"), TokenHash::of("secret"));
    assert!(!shown.contains("argon2"), "{shown}");
    assert!(shown.contains("ann"));
}

#[tokio::test]
async fn a_journal_with_two_spellings_of_one_name_imports_the_one_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
    let lines = [
        format!(r#"{{"op":"user","name":"ann","hash":"{hash}","created":10}}"#),
        format!(r#"{{"op":"user","name":"Ann","hash":"{hash}","created":11}}"#),
        r#"{"op":"session","family":"00000000-0000-4000-8000-000000000001","user":"Ann","token":"aa80298acaf1b10cf0edda6c1a9f7920fa33846a33c8da2038c54ca3a66ad680","created":11,"used":11}"#.to_owned(),
    ];
    std::fs::write(dir.path().join("store.journal"), lines.join("\n") + "\n").unwrap();
    let store = open(&dir.path().join(DB_FILE)).await;
    let imported = store.import_beside(dir.path()).await.unwrap().unwrap();
    assert_eq!(
        (imported.users, imported.skipped_users, imported.sessions),
        (1, 1, 0)
    );
    let names = echo_testkit::conformance::user_names(&store).await;
    assert_eq!(names, ["ann"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_starting_at_once_on_a_new_file_import_the_journal_once() {
    let dir = old_journal();
    let path = dir.path().join(DB_FILE);
    let (one, other) = (open(&path).await, open(&path).await);
    let (a, b) = tokio::join!(
        one.import_beside(dir.path()),
        other.import_beside(dir.path())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.is_some() != b.is_some(), "{a:?} {b:?}");
    assert_eq!(one.users().await.unwrap().len(), 3);
    assert!(dir.path().join("store.journal.imported").exists());
}
