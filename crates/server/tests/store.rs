//! The file store: durability, the lock, damaged files, rotation chains and
//! compaction.
#![allow(clippy::unwrap_used)]

use std::{io::Write, net::IpAddr};

use echo_server::store::{
    FileStore, Lifetimes, Rotation, StoreError, TokenHash, UserRecord, UserStore,
};

const LIFETIMES: Lifetimes = Lifetimes {
    idle: 100,
    absolute: 1000,
};

fn user(name: &str) -> UserRecord {
    UserRecord {
        name: name.into(),
        password_hash: format!("$argon2id$fake${name}"),
        created: 5,
    }
}

fn journal(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("store.journal")
}

#[tokio::test]
async fn changes_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    {
        let store = FileStore::open(dir.path(), LIFETIMES).unwrap();
        store.create_user(user("ann")).await.unwrap();
        store.create_user(user("bob")).await.unwrap();
        store.remember_identity(ip, "Ann", 7).await.unwrap();
        store
            .create_session(TokenHash::of("t1"), "ann", 10)
            .await
            .unwrap();
        store.remove_user("bob").await.unwrap();
    }
    let store = FileStore::open(dir.path(), LIFETIMES).unwrap();
    assert_eq!(store.user("ann").await.unwrap(), Some(user("ann")));
    assert_eq!(store.user("bob").await.unwrap(), None);
    assert_eq!(store.identity(ip).await.unwrap().as_deref(), Some("Ann"));
    assert_eq!(store.sessions("ann", 20).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_taken_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), LIFETIMES).unwrap();
    store.create_user(user("ann")).await.unwrap();
    assert!(matches!(
        store.create_user(user("ann")).await,
        Err(StoreError::NameTaken(name)) if name == "ann"
    ));
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_let_exactly_one_through() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), LIFETIMES).unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.create_user(user("same")).await.is_ok() })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        created += usize::from(task.await.unwrap());
    }
    assert_eq!(created, 1);
}

#[test]
fn only_one_process_may_own_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let first = FileStore::open(dir.path(), LIFETIMES).unwrap();
    let err = FileStore::open(dir.path(), LIFETIMES).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }));
    assert!(err.to_string().contains("store.lock"), "{err}");
    drop(first);
    FileStore::open(dir.path(), LIFETIMES).unwrap();
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
    assert!(
        matches!(err, StoreError::Corrupt { line: 2, .. }),
        "{message}"
    );
    assert!(message.contains(path.to_str().unwrap()), "{message}");
    // The damaged file is left as it was for the operator to look at.
    assert!(std::fs::read_to_string(&path).unwrap().contains("???"));
}

#[tokio::test]
async fn rotation_replaces_the_token_and_a_replay_revokes_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), LIFETIMES).unwrap();
    store.create_user(user("ann")).await.unwrap();
    let info = store
        .create_session(TokenHash::of("a"), "ann", 10)
        .await
        .unwrap();
    let Rotation::Rotated(next) = store
        .rotate_session(TokenHash::of("a"), TokenHash::of("b"), 20)
        .await
        .unwrap()
    else {
        panic!("expected a rotation")
    };
    assert_eq!(next.family, info.family);
    assert_eq!(next.last_used, 20);
    assert_eq!(
        store
            .rotate_session(TokenHash::of("a"), TokenHash::of("c"), 30)
            .await
            .unwrap(),
        Rotation::Reused {
            user: "ann".into(),
            family: info.family
        }
    );
    assert_eq!(
        store
            .rotate_session(TokenHash::of("b"), TokenHash::of("d"), 30)
            .await
            .unwrap(),
        Rotation::Unknown
    );
    // The revocation is durable.
    drop(store);
    let store = FileStore::open(dir.path(), LIFETIMES).unwrap();
    assert!(store.sessions("ann", 30).await.unwrap().is_empty());
}

#[tokio::test]
async fn reuse_is_detected_after_a_restart_too() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FileStore::open(dir.path(), LIFETIMES).unwrap();
        store.create_user(user("ann")).await.unwrap();
        store
            .create_session(TokenHash::of("a"), "ann", 10)
            .await
            .unwrap();
        store
            .rotate_session(TokenHash::of("a"), TokenHash::of("b"), 20)
            .await
            .unwrap();
    }
    let store = FileStore::open(dir.path(), LIFETIMES).unwrap();
    assert!(matches!(
        store
            .rotate_session(TokenHash::of("a"), TokenHash::of("c"), 30)
            .await
            .unwrap(),
        Rotation::Reused { .. }
    ));
}

#[tokio::test]
async fn sessions_expire_idle_and_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), LIFETIMES).unwrap();
    store.create_user(user("ann")).await.unwrap();
    store
        .create_session(TokenHash::of("idle"), "ann", 0)
        .await
        .unwrap();
    assert_eq!(
        store
            .rotate_session(TokenHash::of("idle"), TokenHash::of("x"), 100)
            .await
            .unwrap(),
        Rotation::Expired { user: "ann".into() }
    );
    store
        .create_session(TokenHash::of("t0"), "ann", 0)
        .await
        .unwrap();
    let mut token = "t0".to_owned();
    for step in 1..=11 {
        let next = format!("t{step}");
        let outcome = store
            .rotate_session(TokenHash::of(&token), TokenHash::of(&next), step * 90)
            .await
            .unwrap();
        if step * 90 < 1000 {
            assert!(matches!(outcome, Rotation::Rotated(_)), "step {step}");
        } else {
            assert_eq!(outcome, Rotation::Expired { user: "ann".into() });
        }
        token = next;
    }
}

#[tokio::test]
async fn a_new_password_and_removal_revoke_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), LIFETIMES).unwrap();
    store.create_user(user("ann")).await.unwrap();
    store
        .create_session(TokenHash::of("a"), "ann", 0)
        .await
        .unwrap();
    store
        .create_session(TokenHash::of("b"), "ann", 0)
        .await
        .unwrap();
    assert_eq!(store.sessions("ann", 1).await.unwrap().len(), 2);
    store
        .set_password("ann", "$argon2id$new".into())
        .await
        .unwrap();
    assert!(store.sessions("ann", 1).await.unwrap().is_empty());
    assert_eq!(
        store.user("ann").await.unwrap().unwrap().password_hash,
        "$argon2id$new"
    );
    store
        .create_session(TokenHash::of("c"), "ann", 0)
        .await
        .unwrap();
    assert_eq!(store.revoke_user_sessions("ann").await.unwrap(), 1);
    assert!(matches!(
        store.set_password("zed", "h".into()).await,
        Err(StoreError::NoSuchUser(_))
    ));
}

#[tokio::test]
async fn the_journal_is_compacted_and_still_holds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let ip: IpAddr = "10.0.0.9".parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    {
        let store = FileStore::open(dir.path(), LIFETIMES).unwrap();
        store.create_user(user("ann")).await.unwrap();
        for seen in 0..3000 {
            store.remember_identity(ip, "Ann", seen).await.unwrap();
        }
        // Compaction drops chains expired by the wall clock: use real times.
        store
            .create_session(TokenHash::of("a"), "ann", now)
            .await
            .unwrap();
        store
            .rotate_session(TokenHash::of("a"), TokenHash::of("b"), now + 1)
            .await
            .unwrap();
        for seen in 0..1000 {
            store.remember_identity(ip, "Ann", seen).await.unwrap();
        }
    }
    let lines = std::fs::read_to_string(journal(dir.path()))
        .unwrap()
        .lines()
        .count();
    assert!(
        lines < 1500,
        "the journal was never compacted: {lines} lines"
    );
    let store = FileStore::open(dir.path(), LIFETIMES).unwrap();
    assert_eq!(store.identity(ip).await.unwrap().as_deref(), Some("Ann"));
    assert!(store.user("ann").await.unwrap().is_some());
    assert!(matches!(
        store
            .rotate_session(TokenHash::of("a"), TokenHash::of("c"), now + 2)
            .await
            .unwrap(),
        Rotation::Reused { .. }
    ));
}

#[test]
fn debug_output_shows_no_hash() {
    let shown = format!("{:?} {:?}", user("ann"), TokenHash::of("secret"));
    assert!(!shown.contains("argon2"), "{shown}");
    assert!(shown.contains("ann"));
}
