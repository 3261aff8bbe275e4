//! The PostgreSQL store: the conformance suite every store passes, on a
//! throwaway cluster per test, then what is its own: migrations under
//! concurrency, atomic rotation across handles, revocations heard by every
//! handle, the shared attempt ledger, and a database that goes away.
#![allow(clippy::unwrap_used)]

use std::{net::IpAddr, time::Duration};

use echo_server::{
    store::ledger::{Attempt, AttemptLedger, Limited},
    store::{
        EndCause, PgStore, PgUrl, Revocation, Rotation, StoreError, TokenHash, UserStore,
        postgres::schema,
    },
};
use echo_testkit::conformance::{Backend, LIFETIMES, user};
use echo_testkit::postgres::Postgres;

/// A fresh database; every `open` is another server on it.
struct PgBackend {
    pg: Postgres,
}

impl PgBackend {
    fn start() -> Option<Self> {
        Postgres::start().map(|pg| Self { pg })
    }

    fn url(&self) -> PgUrl {
        PgUrl::parse(&self.pg.url(), None).unwrap()
    }
}

impl Backend for PgBackend {
    type Store = PgStore;

    async fn open(&self) -> PgStore {
        PgStore::open(&self.url(), LIFETIMES, 4).await.unwrap()
    }

    fn ledger(&self, store: &PgStore) -> std::sync::Arc<dyn AttemptLedger> {
        std::sync::Arc::new(store.ledger())
    }
}

echo_testkit::conformance_suite!(PgBackend::start());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_starting_at_once_apply_each_schema_version_once() {
    let Some(backend) = PgBackend::start() else {
        return;
    };
    let url = backend.url();
    let opening = (0..6).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { PgStore::open(&url, LIFETIMES, 2).await.map(drop) })
    });
    for opened in futures_util::future::join_all(opening).await {
        opened.unwrap().unwrap();
    }
    let applied = schema::applied(&url).await.unwrap();
    let versions: Vec<i32> = applied.iter().map(|a| a.version).collect();
    assert_eq!(versions, (1..=schema::latest()).collect::<Vec<_>>());
    let report = schema::report(&url, &applied);
    assert!(report.contains("up to date"), "{report}");
}

#[tokio::test]
async fn a_database_newer_than_the_binary_is_refused() {
    let Some(backend) = PgBackend::start() else {
        return;
    };
    let store = backend.open().await;
    let (client, _notes) = raw_client(&backend.pg).await;
    client
        .execute(
            "INSERT INTO schema_migrations (version, name) VALUES (999, 'from the future')",
            &[],
        )
        .await
        .unwrap();
    drop(store);
    match PgStore::open(&backend.url(), LIFETIMES, 2).await {
        Err(StoreError::SchemaTooNew { found: 999, known }) => assert_eq!(known, schema::latest()),
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let report = schema::report(
        &backend.url(),
        &schema::applied(&backend.url()).await.unwrap(),
    );
    assert!(report.contains("upgrade echo-server"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_token_presented_twice_at_once_rotates_once_and_revokes() {
    let Some(backend) = PgBackend::start() else {
        return;
    };
    let (a, b) = (backend.open().await, backend.open().await);
    for round in 0..50u64 {
        let first = TokenHash::of(&format!("first-{round}"));
        a.register(user(&format!("u{round}")), first).await.unwrap();
        let (next_a, next_b) = (
            TokenHash::of(&format!("a-{round}")),
            TokenHash::of(&format!("b-{round}")),
        );
        let (ra, rb) = tokio::join!(
            a.rotate_session(first, next_a, 10),
            b.rotate_session(first, next_b, 10)
        );
        let outcomes = [ra.unwrap(), rb.unwrap()];
        let rotated = outcomes
            .iter()
            .filter(|o| matches!(o, Rotation::Rotated(_)))
            .count();
        let reused = outcomes
            .iter()
            .filter(|o| matches!(o, Rotation::Reused { .. }))
            .count();
        assert_eq!((rotated, reused), (1, 1), "round {round}: {outcomes:?}");
        // The chain is gone: the winner's new token is refused too.
        for next in [next_a, next_b] {
            let again = a
                .rotate_session(next, TokenHash::of("x"), 11)
                .await
                .unwrap();
            assert_eq!(again, Rotation::Unknown);
        }
    }
}

#[tokio::test]
async fn a_chain_ended_through_one_handle_is_heard_by_the_others() {
    let Some(backend) = PgBackend::start() else {
        return;
    };
    let (a, b) = (backend.open().await, backend.open().await);
    let mut heard = b.revocations();
    let session = a.register(user("ann"), TokenHash::of("t")).await.unwrap();
    // The listener connects in the background: waited for until the
    // database has its `LISTEN`.
    let pg = &backend.pg;
    let listening = echo_testkit::wait_until_async(Duration::from_secs(10), || async move {
        // Its first query is the LISTEN (a health check follows every 2 s).
        let query = "SELECT count(*) FROM pg_stat_activity
                     WHERE application_name = 'echo-server revocations' AND query <> ''";
        pg.psql(query).trim() != "0"
    })
    .await;
    assert!(listening, "the listener never sent LISTEN");
    assert!(
        a.revoke_session(session.chain, EndCause::Logout)
            .await
            .unwrap()
    );
    let note = tokio::time::timeout(Duration::from_secs(1), heard.recv())
        .await
        .expect("no revocation heard within a second")
        .unwrap();
    assert_eq!(
        note,
        Revocation::Chain(session.chain, Some(EndCause::Logout))
    );
    assert!(
        b.chains_alive(vec![session.chain])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn sweeping_deletes_what_expired_without_announcing_it() {
    let Some(backend) = PgBackend::start() else {
        return;
    };
    let (a, b) = (backend.open().await, backend.open().await);
    let mut heard = b.revocations();
    b.listening().await;
    // LIFETIMES: idle 100 s, identities 500 s. `user()` was created at 5.
    let old = a.register(user("old"), TokenHash::of("old")).await.unwrap();
    let fresh = a
        .create_session(TokenHash::of("fresh"), "old", 550)
        .await
        .unwrap();
    let ip: IpAddr = "192.0.2.9".parse().unwrap();
    a.remember_identity(ip, "old", 5).await.unwrap();
    assert_eq!(a.sweep(200).await.unwrap(), (1, 0));
    let alive = a.chains_alive(vec![old.chain, fresh.chain]).await.unwrap();
    assert_eq!(alive, vec![fresh.chain]);
    assert_eq!(a.sweep(600).await.unwrap(), (0, 1));
    assert!(
        a.identity(ip, 0).await.unwrap().is_none(),
        "the address was kept"
    );
    // An expired chain is not a revocation: nothing was announced.
    let quiet = tokio::time::timeout(Duration::from_millis(300), heard.recv()).await;
    assert!(quiet.is_err(), "an expiry was announced: {quiet:?}");
    // A revocation still is.
    assert!(
        a.revoke_session(fresh.chain, EndCause::Operator)
            .await
            .unwrap()
    );
    let note = tokio::time::timeout(Duration::from_secs(1), heard.recv()).await;
    let operator = Revocation::Chain(fresh.chain, Some(EndCause::Operator));
    assert_eq!(note.unwrap().unwrap(), operator);
}

#[tokio::test]
async fn attempt_limits_are_shared_by_every_server() {
    let Some(backend) = PgBackend::start() else {
        return;
    };
    let (a, b) = (backend.open().await, backend.open().await);
    a.create_user(user("ann")).await.unwrap();
    let (la, lb) = (a.ledger(), b.ledger());
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    for ledger in [&la, &lb, &la] {
        assert_eq!(ledger.charge_address(ip, 3, 1000).await.unwrap(), Ok(()));
    }
    assert_eq!(
        lb.charge_address(ip, 3, 1000).await.unwrap(),
        Err(Limited { retry_after: 20 })
    );
    let ann = Attempt::new("ann", ip, false);
    for ledger in [&la, &lb, &la, &lb, &la] {
        ledger.record_failure(ann, 2000).await.unwrap();
    }
    assert_eq!(
        lb.check_account(ann, 2000).await.unwrap(),
        Err(Limited { retry_after: 1 })
    );
    la.record_success(ann).await.unwrap();
    assert_eq!(lb.check_account(ann, 2000).await.unwrap(), Ok(()));
    // Two addresses of one IPv6 /64 share one allowance across servers.
    let (one, two): (IpAddr, IpAddr) = (
        "2001:db8::1".parse().unwrap(),
        "2001:db8::2".parse().unwrap(),
    );
    for (ledger, ip) in [(&la, one), (&lb, two), (&la, two)] {
        assert_eq!(ledger.charge_address(ip, 3, 3000).await.unwrap(), Ok(()));
    }
    assert!(lb.charge_address(one, 3, 3000).await.unwrap().is_err());
    // Failures from one source on A back that source off on B; the source
    // ann logged in from (noted through B) is not slowed down on A.
    for ledger in [&la, &lb, &la, &lb, &la] {
        ledger.record_failure(ann, 4000).await.unwrap();
    }
    assert!(lb.check_account(ann, 4000).await.unwrap().is_err());
    let home: IpAddr = "198.51.100.1".parse().unwrap();
    b.note_familiar("ann", home, 3500).await.unwrap();
    let familiar = a.familiar_since("ann", home, 4000).await.unwrap().is_some();
    let from_home = Attempt::new("ann", home, familiar);
    assert_eq!(la.check_account(from_home, 4000).await.unwrap(), Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_is_unavailable_then_serves_again() {
    let Some(backend) = PgBackend::start() else {
        return;
    };
    let store = backend.open().await;
    store.create_user(user("ann")).await.unwrap();
    backend.pg.stop();
    match store.user("ann").await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    backend.pg.start_again();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match store.user("ann").await {
            Ok(found) => break assert_eq!(found.unwrap().name, "ann"),
            Err(StoreError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("the store did not come back: {other:?}"),
        }
    }
}

#[tokio::test]
async fn tls_to_the_database_is_verified_against_the_ca_given() {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let (ca_pem, pairs) = echo_tls::ca_signed(&[names]).unwrap();
    let Some(pg) = Postgres::start_tls(&pairs[0]) else {
        return;
    };
    let files = tempfile::tempdir().unwrap();
    let ca = files.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let base = format!("postgres://echo@127.0.0.1:{}/echo", pg.port);
    let url = |query: &str| PgUrl::parse(&format!("{base}?{query}"), None).unwrap();
    // The right CA: the store opens, over TLS.
    let store = PgStore::open(
        &url(&format!("sslmode=require&sslrootcert={}", ca.display())),
        LIFETIMES,
        2,
    )
    .await
    .unwrap();
    store.create_user(user("tess")).await.unwrap();
    let sessions = pg.psql("SELECT count(*) FROM pg_stat_ssl WHERE ssl");
    assert_ne!(sessions.trim(), "0", "no connection used TLS");
    // Another CA (or only the system's roots): the certificate is refused.
    let (other_ca, _) = echo_tls::ca_signed(&[]).unwrap();
    let other = files.path().join("other.pem");
    std::fs::write(&other, other_ca).unwrap();
    for query in [
        format!("sslmode=require&sslrootcert={}", other.display()),
        "sslmode=require".into(),
    ] {
        match PgStore::open(&url(&query), LIFETIMES, 2).await {
            Err(StoreError::Unavailable(why)) => assert!(why.contains("cannot connect"), "{why}"),
            other => panic!("an unverified database was accepted ({query}): {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_503_while_the_database_is_down() {
    let Some(backend) = PgBackend::start() else {
        return;
    };
    let store = echo_server::store::Store::Postgres(backend.open().await);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let server =
        echo_server::Server::new(echo_testkit::auth_config(), store).with_metrics_listener(http);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let serving = tokio::spawn(server.serve(listener, shutdown.clone()));
    let status_within = |want: &'static str| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = healthz(http_addr).await;
            if status.contains(want) || std::time::Instant::now() > deadline {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert!(status_within("200").await.contains("200"));
    backend.pg.stop();
    let down = status_within("503").await;
    assert!(
        down.contains("503") && down.contains("store unavailable"),
        "{down}"
    );
    backend.pg.start_again();
    assert!(
        status_within("200").await.contains("200"),
        "not healthy again"
    );
    shutdown.cancel();
    serving.await.unwrap().unwrap();
}

/// `GET /healthz`: the status line and the body.
pub(crate) async fn healthz(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    format!("{status} {body}")
}

async fn raw_client(pg: &Postgres) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, task)
}
