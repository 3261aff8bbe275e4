//! Identities and names, held to one rule whatever the store: addresses
//! remembered and forgotten, any spelling of a name finding its user, names
//! that look alike taken, users listed by name.

use std::net::IpAddr;

use echo_server::store::{Identity, StoreError, TokenHash, UserStore};

use super::{Backend, LIFETIMES, name_of, user};

pub async fn identities_are_remembered_and_replaced(backend: &impl Backend) {
    let store = backend.open().await;
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    assert_eq!(store.identity(ip, 1).await.unwrap(), None);
    store.remember_identity(ip, "Ann", 1).await.unwrap();
    store.remember_identity(v6, "Bob", 1).await.unwrap();
    store.remember_identity(ip, "Anna", 2).await.unwrap();
    assert_eq!(
        store.identity(ip, 3).await.unwrap(),
        Some(Identity {
            name: "Anna".into(),
            seen: 2
        })
    );
    assert_eq!(name_of(&store, v6, 3).await.as_deref(), Some("Bob"));
}

pub async fn identities_unseen_for_their_lifetime_are_forgotten(backend: &impl Backend) {
    let store = backend.open().await;
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    store.remember_identity(ip, "Ann", 100).await.unwrap();
    let last_day = 100 + LIFETIMES.identity - 1;
    assert_eq!(name_of(&store, ip, last_day).await.as_deref(), Some("Ann"));
    assert_eq!(store.identity(ip, last_day + 1).await.unwrap(), None);
    // Seen again, it lives on.
    store.remember_identity(ip, "Ann", last_day).await.unwrap();
    assert_eq!(
        name_of(&store, ip, last_day + 1).await.as_deref(),
        Some("Ann")
    );
}

pub async fn identities_are_listed_and_forgotten(backend: &impl Backend) {
    let store = backend.open().await;
    let (ann, bob, old): (IpAddr, IpAddr, IpAddr) = (
        "192.0.2.9".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
        "192.0.2.1".parse().unwrap(),
    );
    store.remember_identity(ann, "Ann", 300).await.unwrap();
    store.remember_identity(bob, "Bob", 200).await.unwrap();
    store.remember_identity(old, "Old", 1).await.unwrap();
    // At 600, Old (seen at 1) has outlived its 500 s.
    let listed = store.identities(600).await.unwrap();
    let shown: Vec<(IpAddr, &str, u64)> = listed
        .iter()
        .map(|(ip, known)| (*ip, known.name.as_str(), known.seen))
        .collect();
    assert_eq!(shown, [(ann, "Ann", 300), (bob, "Bob", 200)]);
    assert!(store.forget_identity(ann).await.unwrap());
    assert!(!store.forget_identity(ann).await.unwrap(), "already gone");
    assert_eq!(store.identity(ann, 601).await.unwrap(), None);
    assert_eq!(store.identities(601).await.unwrap().len(), 1);
    // Forgotten for good: a restart does not bring it back.
    drop(store);
    let store = backend.open().await;
    assert_eq!(store.identity(ann, 602).await.unwrap(), None);
    assert_eq!(name_of(&store, bob, 602).await.as_deref(), Some("Bob"));
}

pub async fn any_spelling_of_a_name_finds_its_user(backend: &impl Backend) {
    let store = backend.open().await;
    store.create_user(user("Victim")).await.unwrap();
    for spelling in ["Victim", "victim", "VICTIM", "ｖｉｃｔｉｍ"] {
        let found = store.user(spelling).await.unwrap();
        assert_eq!(
            found.map(|u| u.name).as_deref(),
            Some("Victim"),
            "{spelling:?}"
        );
    }
    let info = store
        .create_session(TokenHash::of("a"), "VICTIM", 1)
        .await
        .unwrap();
    assert_eq!(info.user, "Victim", "sessions carry the name as registered");
    assert_eq!(store.sessions("victim", 2).await.unwrap().len(), 1);
    store
        .set_password("vIcTiM", "$argon2id$new".into())
        .await
        .unwrap();
    assert!(store.sessions("Victim", 2).await.unwrap().is_empty());
    store.remove_user("victim").await.unwrap();
    assert_eq!(store.user("Victim").await.unwrap(), None);
    // Its names are free again.
    store.create_user(user("victim")).await.unwrap();
}

pub async fn a_name_that_looks_like_another_is_taken(backend: &impl Backend) {
    let store = backend.open().await;
    store.create_user(user("victim")).await.unwrap();
    for lookalike in ["VICTIM", "vіctim", "ｖｉｃｔｉｍ", "victi\u{301}m"] {
        assert!(
            matches!(
                store
                    .register(user(lookalike), TokenHash::of(lookalike))
                    .await,
                Err(StoreError::NameTaken(_))
            ),
            "{lookalike:?} was registered next to victim"
        );
    }
    assert_eq!(store.users().await.unwrap().len(), 1);
    store.create_user(user("victor")).await.unwrap();
}

pub async fn users_are_listed_by_name(backend: &impl Backend) {
    let store = backend.open().await;
    for name in ["cid", "ann", "bob"] {
        store.create_user(user(name)).await.unwrap();
    }
    let names = super::user_names(&store).await;
    assert_eq!(names, ["ann", "bob", "cid"]);
}
