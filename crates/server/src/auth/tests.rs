//! The authenticator's decisions, without a socket: a SQLite store in a
//! temporary directory, a clock moved by hand, an in-memory ledger.

use std::{net::IpAddr, sync::Arc};

use echo_proto::Secret;

use super::{Authenticator, MemoryLedger, Passwords, Reason};
use crate::{
    store::{SqliteStore, sqlite::DB_FILE},
    sys::clock::{Clock, ManualClock},
    test_util::PASSWORD,
};

struct Fixture {
    auth: Authenticator<SqliteStore>,
    ledger: Arc<MemoryLedger>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// Changes committed to the store.
    fn changes_written(&self) -> u64 {
        self.auth.store.changes()
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

async fn fixture(attempts_per_minute: u32) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join(DB_FILE), Default::default())
        .await
        .unwrap();
    let clock = ManualClock::at(1_000_000);
    let ledger = Arc::new(MemoryLedger::new(100));
    let auth = Authenticator::new(
        store,
        Passwords::start(2).await.unwrap(),
        (ledger.clone(), Arc::new(move || attempts_per_minute)),
        clock.clone(),
        8,
        Arc::default(),
    );
    Fixture {
        auth,
        ledger,
        clock,
        _dir: dir,
    }
}

#[tokio::test]
async fn register_then_login_and_a_wrong_password_counts() {
    let f = fixture(100).await;
    let here = ip("192.0.2.1");
    let grant = f
        .auth
        .register(" ann ", PASSWORD.into(), here)
        .await
        .unwrap();
    assert_eq!(grant.session.user, "ann");
    assert_eq!(grant.token.expose().len(), 64);
    let wrong = f
        .auth
        .login("ann", "wrong horse battery".into(), here)
        .await
        .unwrap_err();
    assert_eq!(wrong.reason, Reason::InvalidCredentials);
    assert!(wrong.counts);
    let unknown = f
        .auth
        .login("nobody", PASSWORD.into(), here)
        .await
        .unwrap_err();
    assert_eq!(unknown, wrong, "unknown user and wrong password look alike");
    let again = f.auth.login("ann", PASSWORD.into(), here).await.unwrap();
    assert_ne!(again.session.chain, grant.session.chain);
}

#[tokio::test]
async fn register_refusals_before_the_password_is_hashed_say_why_and_cost_nothing() {
    let f = fixture(100).await;
    let here = ip("192.0.2.1");
    let weak = f
        .auth
        .register("ann", "password".into(), here)
        .await
        .unwrap_err();
    assert_eq!((weak.reason, weak.counts), (Reason::WeakPassword, false));
    let bad = f
        .auth
        .register("", PASSWORD.into(), here)
        .await
        .unwrap_err();
    assert_eq!((bad.reason, bad.counts), (Reason::InvalidName, false));
    f.auth.register("ann", PASSWORD.into(), here).await.unwrap();
    let taken = f
        .auth
        .register("ann", PASSWORD.into(), here)
        .await
        .unwrap_err();
    assert_eq!((taken.reason, taken.counts), (Reason::NameTaken, false));
}

#[tokio::test]
async fn a_resumed_token_rotates_and_its_replay_ends_the_chain() {
    let f = fixture(100).await;
    let first = f
        .auth
        .register("ann", PASSWORD.into(), ip("192.0.2.1"))
        .await
        .unwrap();
    let second = f.auth.resume(&first.token).await.unwrap();
    assert_eq!(second.session.chain, first.session.chain);
    assert_ne!(second.token, first.token);
    let replay = f.auth.resume(&first.token).await.unwrap_err();
    assert_eq!((replay.reason, replay.counts), (Reason::TokenInvalid, true));
    // The thief's replay revoked the chain: the current token is dead too.
    let current = f.auth.resume(&second.token).await.unwrap_err();
    assert_eq!(current.reason, Reason::TokenInvalid);
    let unknown = f.auth.resume(&Secret::new("00")).await.unwrap_err();
    assert_eq!(unknown.reason, Reason::TokenInvalid);
}

#[tokio::test]
async fn an_address_runs_out_of_password_attempts() {
    let f = fixture(2).await;
    let here = ip("192.0.2.1");
    for _ in 0..2 {
        let refusal = f
            .auth
            .login("ann", PASSWORD.into(), here)
            .await
            .unwrap_err();
        assert_eq!(refusal.reason, Reason::InvalidCredentials);
    }
    let limited = f
        .auth
        .login("ann", PASSWORD.into(), here)
        .await
        .unwrap_err();
    assert_eq!(
        (limited.reason, limited.counts),
        (Reason::RateLimited, true)
    );
    assert!(
        limited.message.contains("try again in 30 s"),
        "{}",
        limited.message
    );
    let register = f
        .auth
        .register("bob", PASSWORD.into(), here)
        .await
        .unwrap_err();
    assert_eq!(register.reason, Reason::RateLimited);
    // Another address is not affected.
    f.auth
        .register("bob", PASSWORD.into(), ip("192.0.2.2"))
        .await
        .unwrap();
}

#[tokio::test]
async fn refused_names_leave_the_address_allowance_and_weak_passwords_use_it() {
    let f = fixture(2).await;
    let here = ip("192.0.2.1");
    f.auth.register("ann", PASSWORD.into(), here).await.unwrap();
    for _ in 0..5 {
        let bad = f.auth.register("", PASSWORD.into(), here).await;
        assert_eq!(bad.unwrap_err().reason, Reason::InvalidName);
        let taken = f.auth.register("ann", PASSWORD.into(), here).await;
        assert_eq!(taken.unwrap_err().reason, Reason::NameTaken);
    }
    // The strength estimate is password work: it is paid for.
    let weak = f.auth.register("bob", "password".into(), here).await;
    assert_eq!(weak.unwrap_err().reason, Reason::WeakPassword);
    let limited = f.auth.register("bob", PASSWORD.into(), here).await;
    assert_eq!(limited.unwrap_err().reason, Reason::RateLimited);
}

#[tokio::test]
async fn identification_remembers_a_valid_name_per_address() {
    let f = fixture(100).await;
    let here = ip("2001:db8::7");
    assert_eq!(f.auth.known_name(here).await.unwrap(), None);
    let refusal = f.auth.name_address(here, "a\u{7}b").await.unwrap_err();
    assert_eq!(
        (refusal.reason, refusal.counts),
        (Reason::InvalidName, false)
    );
    assert_eq!(f.auth.name_address(here, "  Ann ").await.unwrap(), "Ann");
    assert_eq!(
        f.auth.known_name(here).await.unwrap().as_deref(),
        Some("Ann")
    );
    assert_eq!(f.auth.suggested_user(here).await.as_deref(), Some("Ann"));
}

#[tokio::test]
async fn a_returning_address_is_written_down_at_most_once_a_day() {
    let f = fixture(100).await;
    let here = ip("192.0.2.9");
    f.auth.name_address(here, "Ann").await.unwrap();
    let written = f.changes_written();
    for _ in 0..10 {
        assert_eq!(
            f.auth.known_name(here).await.unwrap().as_deref(),
            Some("Ann")
        );
        f.auth.remember_user(here, "Ann").await;
    }
    assert_eq!(f.changes_written(), written, "a known address cost a write");
    f.clock.advance(86_400);
    f.auth.known_name(here).await.unwrap();
    assert_eq!(
        f.changes_written(),
        written + 1,
        "a day later the visit is recorded"
    );
    // A new user from the same address is written at once.
    f.auth.remember_user(here, "Bob").await;
    assert_eq!(f.auth.suggested_user(here).await.as_deref(), Some("Bob"));
}

#[tokio::test]
async fn failures_for_names_that_are_no_account_take_no_room() {
    let f = fixture(1000).await;
    let here = ip("192.0.2.1");
    f.auth.register("ann", PASSWORD.into(), here).await.unwrap();
    for i in 0..20 {
        let junk = f
            .auth
            .login(&format!("junk{i}"), PASSWORD.into(), here)
            .await
            .unwrap_err();
        assert_eq!(junk.reason, Reason::InvalidCredentials);
    }
    assert_eq!(f.ledger.tracked().0, 0, "junk names were tracked");
    let wrong = f
        .auth
        .login("ann", "wrong horse battery".into(), here)
        .await;
    assert_eq!(wrong.unwrap_err().reason, Reason::InvalidCredentials);
    assert_eq!(f.ledger.tracked().0, 1);
}

#[tokio::test]
async fn logins_make_their_source_familiar_written_at_most_once_a_day() {
    use crate::store::UserStore;
    let f = fixture(1000).await;
    let home = ip("2001:db8:0:1::1");
    f.auth.register("Ann", PASSWORD.into(), home).await.unwrap();
    let now = f.clock.now();
    let store = f.auth.store.clone();
    // Registered from the /64: familiar under the canonical name.
    let same_64 = ip("2001:db8:0:1::2");
    assert_eq!(
        store.familiar_since("ann", same_64, now).await.unwrap(),
        Some(now)
    );
    let away = ip("192.0.2.7");
    assert_eq!(store.familiar_since("ann", away, now).await.unwrap(), None);
    // A wrong password does not make a source familiar.
    let wrong = f.auth.login("ann", "wrong horse".into(), away).await;
    assert!(wrong.is_err());
    assert_eq!(store.familiar_since("ann", away, now).await.unwrap(), None);
    f.auth.login("ANN", PASSWORD.into(), away).await.unwrap();
    assert_eq!(
        store.familiar_since("ann", away, now).await.unwrap(),
        Some(now)
    );
    let written = f.changes_written();
    f.auth.login("ann", PASSWORD.into(), away).await.unwrap();
    assert_eq!(f.changes_written(), written + 1, "only the new session");
    f.clock.advance(86_400);
    f.auth.login("ann", PASSWORD.into(), away).await.unwrap();
    assert_eq!(f.changes_written(), written + 3, "a day later: refreshed");
}
