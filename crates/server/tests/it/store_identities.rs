//! The SQLite store keeps the names it read by address in memory while it
//! follows the file: a change made here is seen at once, a change made by
//! another process on the same file within a second.
#![allow(clippy::unwrap_used)]

use std::{net::IpAddr, time::Duration};

use echo_server::store::{SqliteStore, UserStore, sqlite::DB_FILE};
use echo_testkit::conformance::LIFETIMES;

/// The name `store` gives `ip`, once it is `want`, within a second.
async fn becomes(store: &SqliteStore, ip: IpAddr, want: Option<&str>) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let known = store.identity(ip, 10).await.unwrap();
        if known.as_ref().map(|known| known.name.as_str()) == want {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn names_kept_in_memory_follow_the_changes_of_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    let here = SqliteStore::open(&path, LIFETIMES).await.unwrap();
    let elsewhere = SqliteStore::open(&path, LIFETIMES).await.unwrap();
    // Following the file is what lets `here` keep names.
    let _following = here.revocations();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ip: IpAddr = "192.0.2.7".parse().unwrap();

    assert!(becomes(&here, ip, None).await);
    elsewhere.remember_identity(ip, "ann", 10).await.unwrap();
    assert!(
        becomes(&here, ip, Some("ann")).await,
        "a name given elsewhere"
    );
    for _ in 0..3 {
        assert!(becomes(&here, ip, Some("ann")).await);
    }
    elsewhere.remember_identity(ip, "bob", 10).await.unwrap();
    assert!(
        becomes(&here, ip, Some("bob")).await,
        "a name changed elsewhere"
    );

    here.remember_identity(ip, "cy", 10).await.unwrap();
    let now = here.identity(ip, 10).await.unwrap().unwrap();
    assert_eq!(now.name, "cy", "a name changed here is seen at once");
    assert_eq!(
        elsewhere.identity(ip, 10).await.unwrap().unwrap().name,
        "cy"
    );

    assert!(elsewhere.forget_identity(ip).await.unwrap());
    assert!(
        becomes(&here, ip, None).await,
        "an address forgotten elsewhere"
    );
    here.remember_identity(ip, "dee", 10).await.unwrap();
    assert!(here.forget_identity(ip).await.unwrap());
    assert_eq!(here.identity(ip, 10).await.unwrap(), None, "forgotten here");
}
