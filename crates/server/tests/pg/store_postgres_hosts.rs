//! The PostgreSQL store with several hosts in its URL: it works on
//! whichever is the writable primary, and moves when that changes. Two
//! independent throwaway clusters stand in for a primary and the host that
//! takes over (replication itself is `failover.rs`'s): turning the first
//! read-only (`default_transaction_read_only`, as a demoted primary is)
//! must move the pool and the listener to the second, and `/healthz` is
//! 503 only while no writable host answers.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use echo_server::store::{
    EndCause, PgOptions, PgStore, PgUrl, Revocation, StoreError, TokenHash, UserStore,
};
use echo_testkit::{conformance::LIFETIMES, conformance::user, postgres::Postgres};

use crate::store_postgres::healthz;

/// Two clusters, each with the store's schema, and the store's URL naming
/// both (`first` first).
async fn two_hosts() -> Option<(Postgres, Postgres, PgUrl)> {
    let (first, second) = (Postgres::start()?, Postgres::start()?);
    for pg in [&first, &second] {
        let alone = PgUrl::parse(&pg.url(), None).unwrap();
        PgStore::open(&alone, LIFETIMES, 1).await.unwrap();
    }
    let url = format!(
        "postgres://echo@127.0.0.1:{},127.0.0.1:{}/echo?sslmode=disable",
        first.port, second.port
    );
    Some((first, second, PgUrl::parse(&url, None).unwrap()))
}

/// Turns `pg` read-only (or back), for every session, as a demoted
/// primary or a standby is; existing connections see it at their next
/// statement or the one after.
async fn set_read_only(pg: &Postgres, on: bool) {
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let driving = tokio::spawn(connection);
    let value = if on { "on" } else { "off" };
    // One statement each: a batch is one transaction, and ALTER SYSTEM
    // runs outside any.
    for statement in [
        "SET default_transaction_read_only = off".to_owned(),
        format!("ALTER SYSTEM SET default_transaction_read_only = {value}"),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        client.batch_execute(&statement).await.unwrap();
    }
    drop(client);
    let _ = driving.await;
}

/// Creates users `PREFIX0`, `PREFIX1`, ... until one lands on `pg` (an
/// `Unavailable` in between is the store looking for the primary; any
/// other error fails the test); how long it took.
async fn write_until_on(store: &PgStore, pg: &Postgres, prefix: &str) -> Duration {
    let started = Instant::now();
    for i in 0.. {
        let name = format!("{prefix}{i}");
        match store.create_user(user(&name)).await {
            Ok(()) | Err(StoreError::Unavailable(_)) => {}
            Err(other) => panic!("a write to a read-only host was refused, not retried: {other:?}"),
        }
        let query = format!("SELECT count(*) FROM users WHERE name = '{name}'");
        if pg.psql(&query).trim() == "1" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no write reached the writable host within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_turned_read_only_is_left_for_the_writable_one() {
    let Some((first, second, url)) = two_hosts().await else {
        return;
    };
    let store = PgStore::open(&url, LIFETIMES, 4).await.unwrap();
    // Both writable: the first host named is the one used.
    write_until_on(&store, &first, "before").await;
    assert_eq!(second.psql("SELECT count(*) FROM users").trim(), "0");
    // The first demoted: the pool's connections to it are dropped as they
    // fail, and new ones pass it over.
    set_read_only(&first, true).await;
    let moved = write_until_on(&store, &second, "after").await;
    eprintln!("writes moved to the writable host in {moved:?}");
    // And they stay there.
    store.create_user(user("settled")).await.unwrap();
    let on_second = second.psql("SELECT count(*) FROM users WHERE name = 'settled'");
    assert_eq!(on_second.trim(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_host_that_accepts_and_never_answers_does_not_hide_the_next() {
    let Some(pg) = Postgres::start() else { return };
    // The kernel completes the TCP handshake (the backlog), nobody ever
    // reads: a primary frozen or half cut off, as seen from a server.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=echo dbname=echo sslmode=disable",
        silent.local_addr().unwrap().port(),
        pg.port
    );
    let url = PgUrl::parse(&url, None).unwrap();
    let started = Instant::now();
    let store = PgStore::open(&url, LIFETIMES, 2)
        .await
        .expect("the second host was never reached");
    eprintln!("opened past a silent first host in {:?}", started.elapsed());
    write_until_on(&store, &pg, "past").await;
    let mut heard = store.revocations();
    store.listening().await;
    let session = store
        .register(user("ann"), TokenHash::of("t"))
        .await
        .unwrap();
    store
        .revoke_session(session.chain, EndCause::Logout)
        .await
        .unwrap();
    let note = tokio::time::timeout(Duration::from_secs(2), heard.recv())
        .await
        .expect("the listener is not on the answering host")
        .unwrap();
    assert_eq!(
        note,
        Revocation::Chain(session.chain, Some(EndCause::Logout))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_hangs_later_is_left_though_calls_wait_less_than_a_host_gets() {
    let Some((first, second, _)) = two_hosts().await else {
        return;
    };
    // The first host through a relay the test freezes: a primary that
    // hangs (or is cut off) after the store has settled on it.
    let relay = echo_testkit::relay::Relay::start(([127, 0, 0, 1], first.port).into());
    let url = format!(
        "postgres://echo@127.0.0.1:{},127.0.0.1:{}/echo?sslmode=disable",
        relay.port, second.port
    );
    let url = PgUrl::parse(&url, None).unwrap();
    // Calls wait 1 s: less than a host's share of the connect time (2.5 s
    // of 5 s), so no call alone ever gets past the hung host.
    let options = PgOptions {
        pool_size: 4,
        timeout: Duration::from_secs(1),
    };
    let store = PgStore::open_with(&url, LIFETIMES, options).await.unwrap();
    store.listening().await;
    write_until_on(&store, &first, "before").await;
    relay.freeze();
    let frozen = Instant::now();
    write_until_on(&store, &second, "after").await;
    eprintln!(
        "writes reached the other host {:?} after the first hung",
        frozen.elapsed()
    );
    relay.thaw();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_follows_the_primary_and_resyncs() {
    let Some((first, second, url)) = two_hosts().await else {
        return;
    };
    let store = PgStore::open(&url, LIFETIMES, 4).await.unwrap();
    let mut heard = store.revocations();
    store.listening().await;
    set_read_only(&first, true).await;
    let demoted = Instant::now();
    write_until_on(&store, &second, "w").await;
    // A chain ended on the new primary is heard, once the listener has
    // found it (its check every 2 s sees the old one read-only); what
    // ended in between is made up for by a resync.
    let mut resynced = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    for round in 0.. {
        assert!(
            Instant::now() < deadline,
            "no revocation from the new primary heard (resync: {resynced})"
        );
        let token = TokenHash::of(&format!("t{round}"));
        let Ok(session) = store.register(user(&format!("r{round}")), token).await else {
            continue;
        };
        if store
            .revoke_session(session.chain, EndCause::Logout)
            .await
            .is_err()
        {
            continue;
        }
        let wanted = Revocation::Chain(session.chain, Some(EndCause::Logout));
        let until = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Ok(note)) = tokio::time::timeout_at(until, heard.recv()).await {
            resynced |= note == Revocation::Resync;
            if note == wanted {
                assert!(resynced, "heard again without a resync for the gap");
                eprintln!(
                    "the listener heard the new primary {:?} after the old one turned read-only",
                    demoted.elapsed()
                );
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_503_only_while_no_writable_host_answers() {
    let Some((first, second, url)) = two_hosts().await else {
        return;
    };
    let store =
        echo_server::store::Store::Postgres(PgStore::open(&url, LIFETIMES, 2).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let server =
        echo_server::Server::new(echo_testkit::auth_config(), store).with_metrics_listener(http);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let serving = tokio::spawn(server.serve(listener, shutdown.clone()));
    assert!(status_within(http_addr, "200").await.contains("200"));
    // Only a read-only host left: no primary, so not healthy.
    set_read_only(&first, true).await;
    second.stop();
    let cut = Instant::now();
    let down = status_within(http_addr, "503").await;
    eprintln!(
        "/healthz 503 {:?} after the last writable host stopped",
        cut.elapsed()
    );
    assert!(
        down.contains("503"),
        "healthy with no writable host: {down}"
    );
    // A writable host again (the second back): healthy, on it.
    second.start_again();
    let back = Instant::now();
    let up = status_within(http_addr, "200").await;
    eprintln!("/healthz 200 {:?} after it was back", back.elapsed());
    assert!(up.contains("200"), "not healthy on the writable host: {up}");
    shutdown.cancel();
    serving.await.unwrap().unwrap();
}

#[test]
fn db_status_says_whether_a_failover_could_lose_an_acknowledged_change() {
    let Some(pair) = echo_testkit::pg_ha::Pair::start() else {
        return;
    };
    let status = |url: &str| {
        let dir = tempfile::tempdir().unwrap();
        let output = std::process::Command::new(echo_testkit::server_binary())
            .args(["--store", url, "--data-dir"])
            .arg(dir.path())
            .args(["db", "status"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let synchronous = status(&pair.url());
    assert!(
        synchronous.contains("synchronous_standby_names = '*'")
            && synchronous.contains(", sync\n")
            && synchronous.contains("every acknowledged change is on a synchronous standby"),
        "{synchronous}"
    );
    let Some(alone) = Postgres::start() else {
        return;
    };
    let asynchronous = status(&alone.url());
    assert!(
        asynchronous.contains("failover: no standby streams from this database"),
        "{asynchronous}"
    );
    // A server says the same once, at start, in its log.
    let logged = |url: &str, want: &str| {
        use echo_testkit::cluster::{Cluster, UNLIMITED};
        let cluster = Cluster::start_at(url, 1, UNLIMITED, false);
        let dir = cluster.servers[0].0.path().to_owned();
        let said = echo_testkit::wait_until(Duration::from_secs(5), || {
            echo_testkit::read_logs(&dir).contains(want)
        });
        assert!(said, "{}", echo_testkit::read_logs(&dir));
    };
    logged(&pair.url(), "a failover loses no acknowledged change");
    logged(&alone.url(), "no standby streams from this database");
    pair.primary
        .psql("ALTER SYSTEM SET synchronous_standby_names = ''");
    pair.primary.psql("SELECT pg_reload_conf()");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = status(&pair.url());
        if now.contains("failover: synchronous_standby_names is empty") {
            break;
        }
        assert!(Instant::now() < deadline, "{now}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `/healthz` once it answers `want`, or its last answer after 15 s.
async fn status_within(addr: std::net::SocketAddr, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = healthz(addr).await;
        if status.contains(want) || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
