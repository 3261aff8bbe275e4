//! The other faults of a primary with a synchronous standby (#29): the
//! standby killed (writes wait for it; the server gives up at
//! `store_timeout` instead of hanging), both killed and restarted, and a
//! network partition between one server and the primary.
#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use echo_proto::{ByeReason, ClientMsg, ErrorCode, ext::BlockingFrameWrite};
use echo_testkit::{PASSWORD, login, register, resume};
use echo_testkit::{
    cluster::{Answer, Client, Cluster, UNLIMITED},
    pg_ha::Pair,
    postgres::Postgres,
    relay::Relay,
};

/// A store call the database does not answer within 1 s is `unavailable`.
fn config() -> String {
    format!("{UNLIMITED}store_timeout = 1\n")
}

/// A registration on `addr`: how long it took and what it got.
fn timed_register(addr: SocketAddr, name: &str) -> (Duration, Option<Answer>) {
    let asked = Instant::now();
    let answer = Answer::try_at(addr, &register(name, PASSWORD));
    (asked.elapsed(), answer)
}

/// Whether `answer` is `unavailable`.
fn unavailable(answer: &Option<Answer>) -> bool {
    matches!(
        answer,
        Some(Answer::Refused {
            code: ErrorCode::Unavailable,
            ..
        })
    )
}

/// How long until `msg` on `addr` is welcomed (tried every 100 ms).
fn welcomed_within(addr: SocketAddr, msg: &ClientMsg, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(Answer::Welcome(_)) = Answer::try_at(addr, msg) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn a_dead_synchronous_standby_makes_writes_unavailable_not_hung_until_it_is_back() {
    let Some(pair) = Pair::start() else { return };
    let cluster = Cluster::start_at(&pair.url(), 1, &config(), true);
    let addr = cluster.addr(0);
    let (mut established, _) = Client::welcomed(addr, &register("ann", PASSWORD));
    pair.standby.kill_9();
    // Every commit now waits for a standby that is gone
    // (synchronous_commit = on): the server gives up at store_timeout.
    let (took, answer) = timed_register(addr, "bob");
    assert!(unavailable(&answer), "{answer:?}");
    assert!(took < Duration::from_secs(3), "a write hung {took:?}");
    assert_eq!(established.echo("no database needed"), "no database needed");
    // The standby back: it catches up from its slot, and writes go on.
    pair.standby.start_again();
    let back = welcomed_within(addr, &register("cy", PASSWORD), Duration::from_secs(20));
    eprintln!(
        "standby killed: a registration `unavailable` after {took:?}; served again {back:?} after the standby restarted"
    );
    assert!(back.is_some(), "not served after the standby came back");
    // The operator's way out while a standby stays down: no synchronous
    // standby named, commits no longer wait (and are not replicated).
    pair.standby.kill_9();
    let (_, answer) = timed_register(addr, "dan");
    assert!(unavailable(&answer), "{answer:?}");
    pair.primary
        .psql("ALTER SYSTEM SET synchronous_standby_names = ''");
    pair.primary.psql("SELECT pg_reload_conf()");
    let without = welcomed_within(addr, &register("eve", PASSWORD), Duration::from_secs(10));
    assert!(
        without.is_some(),
        "not served with synchronous_standby_names emptied"
    );
}

#[test]
fn both_killed_and_restarted_lose_nothing_acknowledged() {
    let Some(pair) = Pair::start() else { return };
    let cluster = Cluster::start_at(&pair.url(), 2, &config(), true);
    let (_, token) = Client::welcomed(cluster.addr(0), &register("ann", PASSWORD));
    let (_, last) = Client::welcomed(cluster.addr(1), &resume(&token));
    pair.primary.kill_9();
    pair.standby.kill_9();
    let down = Instant::now();
    let answer = Answer::try_at(cluster.addr(0), &login("ann", PASSWORD));
    assert!(unavailable(&answer), "{answer:?}");
    pair.primary.start_again();
    pair.standby.start_again();
    let restarted = down.elapsed();
    for i in 0..2 {
        let back = welcomed_within(
            cluster.addr(i),
            &login("ann", PASSWORD),
            Duration::from_secs(20),
        );
        eprintln!("both killed, restarted in {restarted:?}: server {i} served {back:?} later");
        assert!(back.is_some(), "server {i} not served after both restarted");
    }
    assert!(!pair.primary.in_recovery() && pair.standby.in_recovery());
    match Answer::try_at(cluster.addr(1), &resume(&last)) {
        Some(Answer::Welcome(_)) => {}
        other => panic!("the last token given before the crash: {other:?}"),
    }
}

#[test]
fn a_server_cut_off_from_the_primary_is_unhealthy_then_catches_up_on_what_it_missed() {
    let Some(pg) = Postgres::start() else { return };
    let relay = Relay::start(([127, 0, 0, 1], pg.port).into());
    let through_relay = format!(
        "postgres://echo@127.0.0.1:{}/echo?sslmode=disable",
        relay.port
    );
    let cut_off = Cluster::start_at(&through_relay, 1, &config(), true);
    let other = Cluster::start_at(&pg.url(), 1, &config(), true);
    let (mut on_cut_off, token) = Client::welcomed(cut_off.addr(0), &register("ann", PASSWORD));
    let (mut on_other, _) = Client::welcomed(other.addr(0), &resume(&token));
    relay.freeze();
    let partitioned = Instant::now();
    let unhealthy =
        echo_testkit::wait_until(Duration::from_secs(10), || cut_off.healthz(0) == Some(503));
    let noticed = partitioned.elapsed();
    assert!(unhealthy, "/healthz still 200 on the server cut off");
    let (took, answer) = timed_register(cut_off.addr(0), "bob");
    assert!(unavailable(&answer), "{answer:?}");
    assert!(
        took < Duration::from_secs(3),
        "a registration hung {took:?}"
    );
    // The other server goes on, and ends the chain while the cut-off one
    // cannot hear it.
    assert_eq!(other.healthz(0), Some(200));
    on_other.0.send_msg(&ClientMsg::Logout {}).unwrap();
    assert_eq!(on_cut_off.echo("not heard yet"), "not heard yet");
    relay.thaw();
    let healed = Instant::now();
    let mut ended = None;
    while ended.is_none() && healed.elapsed() < Duration::from_secs(15) {
        ended = on_cut_off.bye_within_a_second();
    }
    eprintln!(
        "partition: /healthz 503 after {noticed:?}; a registration `unavailable` in {took:?}; \
         after healing, a chain ended meanwhile was ended here {:?} later",
        healed.elapsed()
    );
    assert_eq!(ended, Some(ByeReason::Revoked));
    assert!(echo_testkit::wait_until(Duration::from_secs(10), || {
        cut_off.healthz(0) == Some(200)
    }));
}
