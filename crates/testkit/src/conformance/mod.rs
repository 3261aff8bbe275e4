//! The store conformance suite: every behaviour the server relies on from a
//! [`UserStore`], written once, generic over the backend. A test file runs
//! it with `conformance_suite!(backend)`, where `backend` builds a
//! [`Backend`] over fresh, empty data; the file store runs it in
//! `store` tests, and any other backend runs the same cases.

mod ledger;
mod names;

use std::{future::Future, net::IpAddr, sync::Arc};

use echo_server::{
    store::ledger::AttemptLedger,
    store::{EndCause, Lifetimes, Rotation, StoreError, TokenHash, UserRecord, UserStore},
};
pub use ledger::*;
pub use names::*;

/// Session lifetimes every case assumes.
pub const LIFETIMES: Lifetimes = Lifetimes {
    idle: 100,
    absolute: 1000,
    identity: 500,
};

/// A store under test.
pub trait Backend {
    /// The store type.
    type Store: UserStore;

    /// Opens the store with [`LIFETIMES`]. Called again after every handle
    /// of the previous one is dropped, it opens the same data (a restart).
    fn open(&self) -> impl Future<Output = Self::Store>;

    /// The attempt ledger that goes with `store`.
    fn ledger(&self, store: &Self::Store) -> Arc<dyn AttemptLedger>;
}

/// Generates one `#[tokio::test]` per case, each on a fresh backend.
#[macro_export]
macro_rules! conformance_suite {
    ($backend:expr) => {
        $crate::conformance_suite!(@cases $backend;
            changes_survive_reopening,
            a_taken_name_is_refused,
            concurrent_registrations_of_one_name_let_exactly_one_through,
            registration_stores_the_user_and_the_session_together,
            rotation_replaces_the_token_and_a_replay_revokes_the_chain,
            reuse_is_detected_after_a_restart_too,
            reuse_of_any_token_in_the_chains_life_is_detected,
            sessions_expire_idle_and_absolute,
            a_new_password_and_removal_revoke_sessions,
            identities_are_remembered_and_replaced,
            identities_unseen_for_their_lifetime_are_forgotten,
            identities_are_listed_and_forgotten,
            users_are_listed_by_name,
            any_spelling_of_a_name_finds_its_user,
            a_name_that_looks_like_another_is_taken,
            revoking_one_chain_leaves_the_others,
            the_password_allowance_is_per_source_and_an_ipv6_64_is_one,
            failures_from_other_sources_never_slow_the_owner_down,
            a_spray_from_unfamiliar_sources_stops_at_the_daily_ceiling,
            familiar_sources_are_kept_per_source_across_restarts,
        );
    };
    (@cases $backend:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(backend) = $backend else { return };
                $crate::conformance::$case(&backend).await;
            }
        )+
    };
}

/// The name `store` knows for `ip` at `now`.
pub async fn name_of(store: &impl UserStore, ip: IpAddr, now: u64) -> Option<String> {
    store
        .identity(ip, now)
        .await
        .unwrap()
        .map(|known| known.name)
}

/// The names of every user `store` holds, in its order.
pub async fn user_names(store: &impl UserStore) -> Vec<String> {
    store
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect()
}

pub fn user(name: &str) -> UserRecord {
    UserRecord {
        name: name.into(),
        password_hash: format!("$argon2id$fake${name}"),
        created: 5,
    }
}

pub async fn changes_survive_reopening(backend: &impl Backend) {
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    {
        let store = backend.open().await;
        store.create_user(user("ann")).await.unwrap();
        store.create_user(user("bob")).await.unwrap();
        store.remember_identity(ip, "Ann", 7).await.unwrap();
        store
            .create_session(TokenHash::of("t1"), "ann", 10)
            .await
            .unwrap();
        store.remove_user("bob").await.unwrap();
    }
    let store = backend.open().await;
    assert_eq!(store.user("ann").await.unwrap(), Some(user("ann")));
    assert_eq!(store.user("bob").await.unwrap(), None);
    assert_eq!(name_of(&store, ip, 20).await.as_deref(), Some("Ann"));
    assert_eq!(store.sessions("ann", 20).await.unwrap().len(), 1);
}

pub async fn a_taken_name_is_refused(backend: &impl Backend) {
    let store = backend.open().await;
    store.create_user(user("ann")).await.unwrap();
    assert!(matches!(
        store.create_user(user("ann")).await,
        Err(StoreError::NameTaken(name)) if name == "ann"
    ));
}

pub async fn concurrent_registrations_of_one_name_let_exactly_one_through(backend: &impl Backend) {
    let store = backend.open().await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .register(user("same"), TokenHash::of(&format!("t{i}")))
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        created += usize::from(task.await.unwrap());
    }
    assert_eq!(created, 1);
    assert_eq!(store.sessions("same", 6).await.unwrap().len(), 1);
}

pub async fn registration_stores_the_user_and_the_session_together(backend: &impl Backend) {
    let store = backend.open().await;
    let info = store
        .register(user("ann"), TokenHash::of("first"))
        .await
        .unwrap();
    assert_eq!(info.user, "ann");
    assert_eq!(info.created, 5);
    assert_eq!(info.expires, 5 + LIFETIMES.idle);
    assert!(store.user("ann").await.unwrap().is_some());
    assert!(matches!(
        store.register(user("ann"), TokenHash::of("second")).await,
        Err(StoreError::NameTaken(_))
    ));
    // The refused registration left no session behind.
    assert_eq!(store.sessions("ann", 6).await.unwrap(), [info]);
    assert!(matches!(
        store
            .rotate_session(TokenHash::of("second"), TokenHash::of("x"), 6)
            .await
            .unwrap(),
        Rotation::Unknown
    ));
}

pub async fn rotation_replaces_the_token_and_a_replay_revokes_the_chain(backend: &impl Backend) {
    let store = backend.open().await;
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
    assert_eq!(next.chain, info.chain);
    assert_eq!(next.last_used, 20);
    assert_eq!(
        store
            .rotate_session(TokenHash::of("a"), TokenHash::of("c"), 30)
            .await
            .unwrap(),
        Rotation::Reused {
            user: "ann".into(),
            chain: info.chain
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
    let store = backend.open().await;
    assert!(store.sessions("ann", 30).await.unwrap().is_empty());
}

pub async fn reuse_is_detected_after_a_restart_too(backend: &impl Backend) {
    {
        let store = backend.open().await;
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
    let store = backend.open().await;
    assert!(matches!(
        store
            .rotate_session(TokenHash::of("a"), TokenHash::of("c"), 30)
            .await
            .unwrap(),
        Rotation::Reused { .. }
    ));
}

pub async fn reuse_of_any_token_in_the_chains_life_is_detected(backend: &impl Backend) {
    let store = backend.open().await;
    store.create_user(user("ann")).await.unwrap();
    let info = store
        .create_session(TokenHash::of("t0"), "ann", 10)
        .await
        .unwrap();
    for step in 1..=200 {
        let outcome = store
            .rotate_session(
                TokenHash::of(&format!("t{}", step - 1)),
                TokenHash::of(&format!("t{step}")),
                10,
            )
            .await
            .unwrap();
        assert!(matches!(outcome, Rotation::Rotated(_)), "step {step}");
    }
    // The very first token, 200 rotations ago, is still known as the chain's.
    assert_eq!(
        store
            .rotate_session(TokenHash::of("t0"), TokenHash::of("x"), 11)
            .await
            .unwrap(),
        Rotation::Reused {
            user: "ann".into(),
            chain: info.chain
        }
    );
    assert!(store.sessions("ann", 11).await.unwrap().is_empty());
}

pub async fn sessions_expire_idle_and_absolute(backend: &impl Backend) {
    let store = backend.open().await;
    store.create_user(user("ann")).await.unwrap();
    let idle = store
        .create_session(TokenHash::of("idle"), "ann", 0)
        .await
        .unwrap();
    assert_eq!(
        store
            .rotate_session(TokenHash::of("idle"), TokenHash::of("x"), 100)
            .await
            .unwrap(),
        Rotation::Expired {
            user: "ann".into(),
            chain: idle.chain
        }
    );
    let worn = store
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
            let expired = Rotation::Expired {
                user: "ann".into(),
                chain: worn.chain,
            };
            assert_eq!(outcome, expired);
        }
        token = next;
    }
}

pub async fn a_new_password_and_removal_revoke_sessions(backend: &impl Backend) {
    let store = backend.open().await;
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
    store
        .create_session(TokenHash::of("d"), "ann", 0)
        .await
        .unwrap();
    store.remove_user("ann").await.unwrap();
    assert!(store.sessions("ann", 1).await.unwrap().is_empty());
    assert!(matches!(
        store.remove_user("ann").await,
        Err(StoreError::NoSuchUser(_))
    ));
    assert!(matches!(
        store.create_session(TokenHash::of("e"), "ann", 0).await,
        Err(StoreError::NoSuchUser(_))
    ));
}

pub async fn revoking_one_chain_leaves_the_others(backend: &impl Backend) {
    let store = backend.open().await;
    store.create_user(user("ann")).await.unwrap();
    let first = store
        .create_session(TokenHash::of("a"), "ann", 0)
        .await
        .unwrap();
    let second = store
        .create_session(TokenHash::of("b"), "ann", 0)
        .await
        .unwrap();
    assert!(
        store
            .revoke_session(first.chain, EndCause::Operator)
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_session(first.chain, EndCause::Operator)
            .await
            .unwrap()
    );
    let left: Vec<_> = store
        .sessions("ann", 1)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.chain)
        .collect();
    assert_eq!(left, [second.chain]);
    assert_eq!(
        store
            .rotate_session(TokenHash::of("a"), TokenHash::of("x"), 1)
            .await
            .unwrap(),
        Rotation::Unknown
    );
}
