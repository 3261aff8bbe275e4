//! The file store: the conformance suite every store passes, then what is
//! the file store's own: the lock, damaged files, compaction.
#![allow(clippy::unwrap_used)]

use std::{io::Write, net::IpAddr, path::Path};

use echo_server::{
    store::ledger::{AttemptLedger, MemoryLedger},
    store::{self, FileStore, Rotation, Store, StoreError, StoreLocation, TokenHash, UserStore},
};
use echo_testkit::ManualClock;
use echo_testkit::conformance::{Backend, LIFETIMES, name_of, user};

/// File stores in one temporary directory.
struct FileBackend(tempfile::TempDir);

impl FileBackend {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }
}

impl Backend for FileBackend {
    type Store = FileStore;

    async fn open(&self) -> FileStore {
        FileStore::open(self.0.path(), LIFETIMES).unwrap()
    }

    fn ledger(&self, _: &FileStore, per_minute: u32) -> std::sync::Arc<dyn AttemptLedger> {
        std::sync::Arc::new(MemoryLedger::new(10_000, per_minute))
    }
}

echo_testkit::conformance_suite!(Some(FileBackend::new()));

fn journal(dir: &Path) -> std::path::PathBuf {
    dir.join("store.journal")
}

#[test]
fn only_one_process_may_own_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let first = FileStore::open(dir.path(), LIFETIMES).unwrap();
    let err = FileStore::open(dir.path(), LIFETIMES).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }));
    assert!(err.to_string().contains("store.lock"), "{err}");
    drop(first);
    FileStore::open(dir.path(), LIFETIMES).unwrap();
}

#[tokio::test]
async fn the_store_is_chosen_from_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let location = StoreLocation::File(dir.path().to_owned());
    let clock = ManualClock::at(0);
    let store = store::open(&location, LIFETIMES, clock.clone())
        .await
        .unwrap();
    assert!(matches!(store, Store::File(_)));
    store.create_user(user("ann")).await.unwrap();
    drop(store);
    assert!(
        std::fs::read_to_string(journal(dir.path()))
            .unwrap()
            .contains("\"ann\"")
    );
}

#[tokio::test]
async fn a_torn_last_line_is_dropped_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FileStore::open(dir.path(), LIFETIMES).unwrap();
        store.create_user(user("ann")).await.unwrap();
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(journal(dir.path()))
        .unwrap();
    file.write_all(br#"{"op":"user","name":"half"#).unwrap();
    drop(file);
    let store = FileStore::open(dir.path(), LIFETIMES).unwrap();
    assert!(store.user("ann").await.unwrap().is_some());
    store.create_user(user("bob")).await.unwrap();
    drop(store);
    let store = FileStore::open(dir.path(), LIFETIMES).unwrap();
    let names: Vec<String> = store
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["ann", "bob"]);
}

#[tokio::test]
async fn a_damaged_line_is_a_clear_error_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FileStore::open(dir.path(), LIFETIMES).unwrap();
        store.create_user(user("ann")).await.unwrap();
        store.create_user(user("bob")).await.unwrap();
    }
    let path = journal(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen("\"op\":\"user\"", "\"op\":???", 2).replacen(
            "\"op\":???",
            "\"op\":\"user\"",
            1,
        ),
    )
    .unwrap();
    let err = FileStore::open(dir.path(), LIFETIMES).unwrap_err();
    let message = err.to_string();
    let expected_place = format!("file {}, line 2:", path.display());
    assert!(
        matches!(&err, StoreError::Corrupt { what, .. } if what.ends_with(", line 2")),
        "{message}"
    );
    assert!(message.contains(&expected_place), "{message}");
    // The damaged file is left as it was for the operator to look at.
    assert!(std::fs::read_to_string(&path).unwrap().contains("???"));
}

#[tokio::test]
async fn the_journal_is_compacted_on_the_stores_clock_and_still_holds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let ip: IpAddr = "10.0.0.9".parse().unwrap();
    let clock = ManualClock::at(50);
    let open = || FileStore::open_with_clock(dir.path(), LIFETIMES, clock.clone()).unwrap();
    {
        let store = open();
        store.create_user(user("ann")).await.unwrap();
        for seen in 0..3000 {
            store.remember_identity(ip, "Ann", seen).await.unwrap();
        }
        store
            .create_session(TokenHash::of("a"), "ann", 50)
            .await
            .unwrap();
        store
            .rotate_session(TokenHash::of("a"), TokenHash::of("b"), 51)
            .await
            .unwrap();
        // A chain that has expired by the store's clock when it compacts:
        // compaction forgets it.
        store
            .create_session(TokenHash::of("old"), "ann", 0)
            .await
            .unwrap();
        clock.advance(100);
        for seen in 0..1000 {
            store.remember_identity(ip, "Ann", seen).await.unwrap();
        }
    }
    let text = std::fs::read_to_string(journal(dir.path())).unwrap();
    let lines = text.lines().count();
    assert!(
        lines < 1500,
        "the journal was never compacted: {lines} lines"
    );
    let store = open();
    assert_eq!(name_of(&store, ip, 150).await.as_deref(), Some("Ann"));
    assert!(store.user("ann").await.unwrap().is_some());
    assert!(matches!(
        store
            .rotate_session(TokenHash::of("a"), TokenHash::of("c"), 52)
            .await
            .unwrap(),
        Rotation::Reused { .. }
    ));
    assert_eq!(
        store
            .rotate_session(TokenHash::of("old"), TokenHash::of("x"), 52)
            .await
            .unwrap(),
        Rotation::Unknown,
        "compaction kept a chain expired by the store's clock"
    );
}

#[test]
fn debug_output_shows_no_hash() {
    let shown = format!("{:?} {:?}", user("ann"), TokenHash::of("secret"));
    assert!(!shown.contains("argon2"), "{shown}");
    assert!(shown.contains("ann"));
}

#[tokio::test]
async fn compaction_forgets_identities_unseen_for_their_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(0);
    let store = FileStore::open_with_clock(dir.path(), LIFETIMES, clock.clone()).unwrap();
    let (gone, kept): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    store.remember_identity(gone, "Old", 0).await.unwrap();
    clock.advance(LIFETIMES.identity + 1);
    for seen in 0..3000 {
        store
            .remember_identity(kept, "New", LIFETIMES.identity + seen)
            .await
            .unwrap();
    }
    drop(store);
    let text = std::fs::read_to_string(journal(dir.path())).unwrap();
    assert!(
        text.lines().count() < 1500,
        "the journal was never compacted"
    );
    assert!(
        !text.contains("10.0.0.1"),
        "an expired identity survived compaction"
    );
    assert!(text.contains("10.0.0.2"));
}

#[tokio::test]
async fn familiar_sources_survive_compaction_until_unused_for_90_days() {
    let dir = tempfile::tempdir().unwrap();
    // A journal from before familiar sources loads: nothing is familiar.
    let old = "{\"op\":\"user\",\"name\":\"ann\",\"hash\":\"h\",\"created\":1}\n";
    std::fs::write(journal(dir.path()), old).unwrap();
    let clock = ManualClock::at(0);
    let store = FileStore::open_with_clock(dir.path(), LIFETIMES, clock.clone()).unwrap();
    let (gone, kept): (IpAddr, IpAddr) =
        ("10.0.0.3".parse().unwrap(), "2001:db8::4".parse().unwrap());
    assert_eq!(store.familiar_since("ann", gone, 0).await.unwrap(), None);
    store.note_familiar("ann", gone, 0).await.unwrap();
    clock.advance(store::FAMILIAR_SOURCE_SECS);
    for seen in 0..1100 {
        let now = store::FAMILIAR_SOURCE_SECS + seen;
        store.note_familiar("ann", kept, now).await.unwrap();
    }
    drop(store);
    let text = std::fs::read_to_string(journal(dir.path())).unwrap();
    assert!(
        text.lines().count() < 500,
        "the journal was never compacted"
    );
    assert!(
        !text.contains("10.0.0.3"),
        "a source unused for 90 days survived"
    );
    // Stored as its /64.
    assert!(text.contains("\"source\":\"2001:db8::\""), "{text}");
    let store = FileStore::open_with_clock(dir.path(), LIFETIMES, clock.clone()).unwrap();
    let now = store::FAMILIAR_SOURCE_SECS + 2000;
    let since = store.familiar_since("ann", "2001:db8::99".parse().unwrap(), now);
    assert_eq!(
        since.await.unwrap(),
        Some(store::FAMILIAR_SOURCE_SECS + 1099)
    );
}
