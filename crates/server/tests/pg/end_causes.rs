//! Every way a session chain ends on one server is heard by the others
//! with its cause (`echo_ended`, schema version 4): what their live
//! connections' `bye {revoked}` then says.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use echo_server::store::{EndCause, PgStore, PgUrl, Revocation, Rotation, TokenHash, UserStore};
use echo_testkit::conformance::{LIFETIMES, user};
use echo_testkit::postgres::Postgres;
use tokio::sync::broadcast;
use uuid::Uuid;

/// The next revocation heard, within a second.
async fn next(heard: &mut broadcast::Receiver<Revocation>) -> (Uuid, Option<EndCause>) {
    let note = tokio::time::timeout(Duration::from_secs(1), heard.recv())
        .await
        .expect("no revocation heard within a second")
        .unwrap();
    match note {
        Revocation::Chain(chain, cause) => (chain, cause),
        Revocation::Resync => panic!("a resync, not a chain"),
    }
}

#[tokio::test]
async fn every_way_a_chain_ends_is_announced_with_its_cause() {
    let Some(pg) = Postgres::start() else { return };
    let url = PgUrl::parse(&pg.url(), None).unwrap();
    let a = PgStore::open(&url, LIFETIMES, 4).await.unwrap();
    let b = PgStore::open(&url, LIFETIMES, 4).await.unwrap();
    let mut heard = b.revocations();
    b.listening().await;
    let first = a.register(user("ann"), TokenHash::of("a")).await.unwrap();
    let session = |token: &'static str| a.create_session(TokenHash::of(token), "ann", 10);

    let logout = session("l").await.unwrap();
    assert!(
        a.revoke_session(logout.chain, EndCause::Logout)
            .await
            .unwrap()
    );
    assert_eq!(
        next(&mut heard).await,
        (logout.chain, Some(EndCause::Logout))
    );

    let reused = session("r0").await.unwrap();
    let rotate = |from, to, now| a.rotate_session(TokenHash::of(from), TokenHash::of(to), now);
    assert!(matches!(
        rotate("r0", "r1", 20).await.unwrap(),
        Rotation::Rotated(_)
    ));
    assert!(matches!(
        rotate("r0", "r2", 21).await.unwrap(),
        Rotation::Reused { .. }
    ));
    assert_eq!(
        next(&mut heard).await,
        (reused.chain, Some(EndCause::Reuse))
    );

    // LIFETIMES: idle 100 s.
    let expired = session("e0").await.unwrap();
    assert!(matches!(
        rotate("e0", "e1", 500).await.unwrap(),
        Rotation::Expired { .. }
    ));
    assert_eq!(
        next(&mut heard).await,
        (expired.chain, Some(EndCause::Expired))
    );

    let revoked = session("o").await.unwrap();
    assert_eq!(a.revoke_user_sessions("ANN").await.unwrap(), 2);
    let mut both = [next(&mut heard).await, next(&mut heard).await];
    both.sort_by_key(|(chain, _)| *chain);
    let mut wanted = [
        (first.chain, Some(EndCause::Operator)),
        (revoked.chain, Some(EndCause::Operator)),
    ];
    wanted.sort_by_key(|(chain, _)| *chain);
    assert_eq!(both, wanted);

    let changed = session("p").await.unwrap();
    a.set_password("ann", "$argon2id$fake$new".into())
        .await
        .unwrap();
    let password_changed = Some(EndCause::PasswordChanged);
    assert_eq!(next(&mut heard).await, (changed.chain, password_changed));

    let removed = session("u").await.unwrap();
    a.remove_user("ann").await.unwrap();
    assert_eq!(
        next(&mut heard).await,
        (removed.chain, Some(EndCause::Operator))
    );

    // A chain ended by hand in SQL is announced without a cause.
    a.register(user("bob"), TokenHash::of("b")).await.unwrap();
    pg.psql("DELETE FROM sessions");
    let (_, cause) = next(&mut heard).await;
    assert_eq!(cause, None);
}
