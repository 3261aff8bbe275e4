//! The attempt ledger and the familiar sources, held to one rule whatever
//! the store: [`Backend::ledger`] is the ledger that goes with the store
//! (the memory ledger for the file store, the shared one for PostgreSQL).
//!
//! A source is what the connection caps count: an IPv4 address, an IPv6 /64.

use std::net::IpAddr;

use echo_server::{
    store::ledger::{Attempt, AttemptLedger, Limited},
    store::{FAMILIAR_SOURCE_SECS, MAX_FAMILIAR_SOURCES, UserStore},
};

use super::{Backend, user};

/// Noon on a UTC day, in Unix seconds.
const NOON: u64 = 20_000 * 86_400 + 43_200;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The `i`th address of the IPv6 /64 `2001:db8:0:1::/64`.
fn in_one_64(i: u32) -> IpAddr {
    ip(&format!("2001:db8:0:1::{i:x}"))
}

/// The `i`th of many IPv4 sources (`10.1.x.y`).
fn v4(i: u32) -> IpAddr {
    IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8])
}

/// Password attempts a minute from one source, in these cases.
const PER_MINUTE: u32 = 3;

/// Attempts allowed out of `tries` from `ip` at `now`.
async fn allowed(ledger: &dyn AttemptLedger, ip: IpAddr, now: u64, tries: u32) -> u32 {
    let mut allowed = 0;
    for _ in 0..tries {
        if ledger
            .charge_address(ip, PER_MINUTE, now)
            .await
            .unwrap()
            .is_ok()
        {
            allowed += 1;
        }
    }
    allowed
}

/// Row 6 of "Hardening III": ten addresses of one IPv6 /64, three attempts
/// a minute each, ask for thirty; they share one allowance (three), as they
/// share the connection caps. Before: 30.
pub async fn the_password_allowance_is_per_source_and_an_ipv6_64_is_one(backend: &impl Backend) {
    let store = backend.open().await;
    let ledger = backend.ledger(&store);
    let mut total = 0;
    for i in 1..=10 {
        total += allowed(ledger.as_ref(), in_one_64(i), NOON, 3).await;
    }
    assert_eq!(total, 3, "ten addresses of one /64 got {total} attempts");
    assert_eq!(
        ledger
            .charge_address(in_one_64(77), PER_MINUTE, NOON)
            .await
            .unwrap(),
        Err(Limited { retry_after: 20 })
    );
    // Another /64, and IPv4 addresses, each have their own.
    let next_64 = ip("2001:db8:0:2::1");
    assert_eq!(allowed(ledger.as_ref(), next_64, NOON, 3).await, 3);
    assert_eq!(allowed(ledger.as_ref(), ip("192.0.2.1"), NOON, 3).await, 3);
    assert_eq!(allowed(ledger.as_ref(), ip("192.0.2.2"), NOON, 3).await, 3);
    // An IPv4-mapped address is its IPv4 address.
    let mapped = ip("::ffff:192.0.2.1");
    assert_eq!(allowed(ledger.as_ref(), mapped, NOON, 1).await, 0);
}

/// Row 7: two hundred wrong passwords from forty unfamiliar sources. Each
/// of them backs off; the owner, from where they logged in before and from
/// a new address, does not. Before: every source `rate_limited`.
pub async fn failures_from_other_sources_never_slow_the_owner_down(backend: &impl Backend) {
    let store = backend.open().await;
    let ledger = backend.ledger(&store);
    store.create_user(user("ann")).await.unwrap();
    let home = ip("192.0.2.10");
    store
        .note_familiar("ann", home, NOON - 86_400)
        .await
        .unwrap();
    let familiar = store.familiar_since("ann", home, NOON).await.unwrap();
    assert_eq!(familiar, Some(NOON - 86_400));
    for i in 0..40 {
        let attempt = Attempt::new("ann", v4(i), false);
        for _ in 0..5 {
            assert_eq!(ledger.check_account(attempt, NOON).await.unwrap(), Ok(()));
            ledger.record_failure(attempt, NOON).await.unwrap();
        }
        assert_eq!(
            ledger.check_account(attempt, NOON).await.unwrap(),
            Err(Limited { retry_after: 1 }),
            "source {i} is not backing off"
        );
    }
    let owner = Attempt::new("ann", home, true);
    assert_eq!(ledger.check_account(owner, NOON).await.unwrap(), Ok(()));
    let travelling = Attempt::new("ann", ip("198.51.100.1"), false);
    assert_eq!(
        ledger.check_account(travelling, NOON).await.unwrap(),
        Ok(())
    );
    // The owner's own failures from home back off home only.
    for _ in 0..5 {
        ledger.record_failure(owner, NOON).await.unwrap();
    }
    assert!(ledger.check_account(owner, NOON).await.unwrap().is_err());
    ledger.record_success(owner).await.unwrap();
    assert_eq!(ledger.check_account(owner, NOON).await.unwrap(), Ok(()));
    assert!(
        ledger
            .check_account(Attempt::new("ann", v4(0), false), NOON)
            .await
            .unwrap()
            .is_err(),
        "a login from home lifted another source's back-off"
    );
}

/// One source gets at most 100 failures a day on one account; unfamiliar
/// sources together at most 1000, after which only the sources the owner
/// logged in from still get a password checked, until UTC midnight.
pub async fn a_spray_from_unfamiliar_sources_stops_at_the_daily_ceiling(backend: &impl Backend) {
    let store = backend.open().await;
    let ledger = backend.ledger(&store);
    store.create_user(user("ann")).await.unwrap();
    let first = Attempt::new("ann", v4(0), false);
    for _ in 0..100 {
        ledger.record_failure(first, NOON).await.unwrap();
        ledger.record_success(first).await.unwrap();
    }
    assert_eq!(
        ledger.check_account(first, NOON).await.unwrap(),
        Err(Limited {
            retry_after: 43_200
        }),
        "one source's 100 failures a day"
    );
    let fresh = Attempt::new("ann", v4(500), false);
    assert_eq!(ledger.check_account(fresh, NOON).await.unwrap(), Ok(()));
    for i in 1..10 {
        let attempt = Attempt::new("ann", v4(i), false);
        for _ in 0..100 {
            ledger.record_failure(attempt, NOON).await.unwrap();
        }
    }
    assert_eq!(
        ledger.check_account(fresh, NOON).await.unwrap(),
        Err(Limited {
            retry_after: 43_200
        }),
        "1000 failures from unfamiliar sources: the ceiling"
    );
    let home = Attempt::new("ann", ip("192.0.2.10"), true);
    assert_eq!(ledger.check_account(home, NOON).await.unwrap(), Ok(()));
    let other = Attempt::new("bob", v4(500), false);
    assert_eq!(ledger.check_account(other, NOON).await.unwrap(), Ok(()));
    let tomorrow = NOON + 43_200;
    assert_eq!(ledger.check_account(fresh, tomorrow).await.unwrap(), Ok(()));
}

/// Where an account logged in is remembered per source, across restarts,
/// for [`FAMILIAR_SOURCE_SECS`] after the last login, at most
/// [`MAX_FAMILIAR_SOURCES`] sources per account.
pub async fn familiar_sources_are_kept_per_source_across_restarts(backend: &impl Backend) {
    {
        let store = backend.open().await;
        store
            .note_familiar("ann", in_one_64(5), NOON)
            .await
            .unwrap();
        store
            .note_familiar("ann", ip("192.0.2.1"), NOON)
            .await
            .unwrap();
    }
    let store = backend.open().await;
    let since = |who: &'static str, from: IpAddr, now: u64| {
        let store = store.clone();
        async move { store.familiar_since(who, from, now).await.unwrap() }
    };
    assert_eq!(since("ann", in_one_64(9), NOON + 1).await, Some(NOON));
    assert_eq!(since("ann", ip("192.0.2.1"), NOON).await, Some(NOON));
    assert_eq!(since("ann", ip("192.0.2.2"), NOON).await, None);
    assert_eq!(since("ann", ip("2001:db8:0:2::5"), NOON).await, None);
    assert_eq!(since("bob", in_one_64(5), NOON).await, None);
    let forgotten = NOON + FAMILIAR_SOURCE_SECS;
    assert_eq!(since("ann", in_one_64(5), forgotten - 1).await, Some(NOON));
    assert_eq!(since("ann", in_one_64(5), forgotten).await, None);
    // A later login from the same /64 refreshes it.
    store
        .note_familiar("ann", in_one_64(6), NOON + 10)
        .await
        .unwrap();
    assert_eq!(since("ann", in_one_64(5), NOON + 20).await, Some(NOON + 10));
    // One source more than the most kept: the one logged in from longest
    // ago (192.0.2.1, at NOON) is forgotten.
    let most = u32::try_from(MAX_FAMILIAR_SOURCES).unwrap();
    for i in 0..most - 1 {
        let at = NOON + 100 + u64::from(i);
        store.note_familiar("ann", v4(i), at).await.unwrap();
    }
    assert_eq!(since("ann", ip("192.0.2.1"), NOON + 1000).await, None);
    assert_eq!(
        since("ann", in_one_64(1), NOON + 1000).await,
        Some(NOON + 10)
    );
    assert_eq!(since("ann", v4(0), NOON + 1000).await, Some(NOON + 100));
}
