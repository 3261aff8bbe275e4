//! A database that hangs (answers nothing, reports nothing) under real
//! `echo-server` processes: processes of a throwaway PostgreSQL stopped
//! with SIGSTOP (and always continued by a guard). Issue #24, rows 4 and 5.
#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use echo_proto::{ByeReason, ErrorCode, ServerMsg, ext::BlockingFrameRead};
use echo_testkit::{PASSWORD, login, register};
use echo_testkit::{
    cluster::{Answer, Client, Cluster, UNLIMITED},
    postgres::{Frozen, Postgres},
};

/// The process id of the backend that `LISTEN`s for revocations: the one
/// named `echo-server revocations` (its last query is the `LISTEN` or,
/// since the listener is checked, its check).
fn listening_backend(pg: &Postgres) -> i32 {
    let sql = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' \
               AND application_name = 'echo-server revocations'";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids: Vec<i32> = pg
            .psql(sql)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        match pids.as_slice() {
            [pid] => return *pid,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("expected one listening backend, found {other:?}"),
        }
    }
}

/// The keepalive timers (`ss -o`) of the connections to `port` made from
/// this machine, in seconds: `None` for one without keepalive.
fn keepalive_timers(port: u16) -> Vec<Option<f64>> {
    let filter = format!("( dport = :{port} )");
    let out = std::process::Command::new("ss")
        .args(["-tnoH", "state", "established", &filter])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            // `timer:(keepalive,14sec,0)`, `(keepalive,1min12sec,0)`, ...
            let timer = line.split("timer:(keepalive,").nth(1)?;
            let time = timer.split(',').next()?;
            let minutes = time
                .split_once("min")
                .map_or(0.0, |(m, _)| m.parse().unwrap());
            let rest = time.split_once("min").map_or(time, |(_, r)| r);
            let seconds: f64 = rest.strip_suffix("sec").map_or(0.0, |s| s.parse().unwrap());
            let ms: f64 = rest.strip_suffix("ms").map_or(0.0, |s| s.parse().unwrap());
            Some(minutes * 60.0 + seconds + ms / 1000.0)
        })
        .collect()
}

#[test]
fn every_database_connection_has_a_short_tcp_keepalive() {
    let Some(pg) = Postgres::start() else { return };
    let cluster = Cluster::start(&pg, 1, UNLIMITED);
    // A pooled connection and the listening one.
    let _ = Client::welcomed(cluster.addr(0), &register("kay", PASSWORD));
    // A connection busy at that moment shows its retransmission timer, not
    // its keepalive one: read until every connection is idle (bounded).
    let mut timers = Vec::new();
    echo_testkit::wait_until(Duration::from_secs(10), || {
        timers = keepalive_timers(pg.port);
        timers.len() >= 2 && timers.iter().all(|t| t.is_some_and(|secs| secs <= 15.0))
    });
    eprintln!("keepalive timers of the connections to the database: {timers:?}");
    assert!(timers.len() >= 2, "{timers:?}");
    assert!(
        timers.iter().all(|t| t.is_some_and(|secs| secs <= 15.0)),
        "a connection without keepalive, or one first probed after 15 s: {timers:?}"
    );
}

#[test]
fn a_revocation_ends_its_connection_within_15_s_when_the_listener_hung() {
    let Some(pg) = Postgres::start() else { return };
    // The default store_timeout (5 s): the bound must hold as shipped.
    let cluster = Cluster::start(&pg, 1, UNLIMITED);
    let (mut live, _token) = Client::welcomed(cluster.addr(0), &register("ann", PASSWORD));
    assert_eq!(live.echo("before"), "before");
    let mut frozen = Frozen::default();
    frozen.stop(listening_backend(&pg));
    let revoked = cluster.admin(&["session", "revoke", "ann"], "");
    assert!(revoked.status.success(), "{revoked:?}");
    let at = Instant::now();
    // Wait for the server to end the connection (at most 20 s).
    live.0
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let ended = loop {
        match live.0.recv_msg::<ServerMsg>() {
            Ok(Some(ServerMsg::Bye { reason, .. })) => break Some(reason),
            Ok(None) => break None,
            _ if at.elapsed() > Duration::from_secs(20) => break None,
            _ => {}
        }
    };
    let took = at.elapsed();
    drop(frozen);
    eprintln!("listener SIGSTOPped: the revoked session ended {took:?} after the revocation");
    assert_eq!(ended, Some(ByeReason::Revoked), "after {took:?}");
    assert!(
        took < Duration::from_secs(15),
        "the revoked session went on {took:?}"
    );
    // The server listens again: a new session works and a revocation is
    // heard at once.
    let (mut again, _) = Client::welcomed(cluster.addr(0), &login("ann", PASSWORD));
    assert_eq!(again.echo("after"), "after");
}

/// `GET /healthz`: `200 ok`, `503 store unavailable`, ...
fn healthz(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer.lines().next().unwrap_or_default();
    let status = status.split(' ').nth(1).unwrap_or_default().to_owned();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    format!("{status} {}", body.trim())
}

/// How long until `/healthz` starts with `want` (polled every 100 ms, at
/// most `limit`); `None` if it never did.
fn healthz_becomes(addr: SocketAddr, want: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if healthz(addr).starts_with(want) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn a_hung_database_is_unavailable_and_unhealthy_then_healthy_again() {
    let Some(pg) = Postgres::start() else { return };
    let http: SocketAddr = format!("127.0.0.1:{}", echo_testkit::free_port())
        .parse()
        .unwrap();
    let config = format!("{UNLIMITED}store_timeout = 1\nmetrics_addr = \"{http}\"\n");
    let cluster = Cluster::start(&pg, 1, &config);
    let (mut established, _) = Client::welcomed(cluster.addr(0), &register("eve", PASSWORD));
    assert!(healthz_becomes(http, "200", Duration::from_secs(5)).is_some());
    let frozen = pg.freeze();
    let hung = Instant::now();
    // With no traffic at all, the check of the listening connection finds
    // the database hung.
    let unhealthy = healthz_becomes(http, "503 store unavailable", Duration::from_secs(10));
    // A login while the database hangs: `unavailable` within the deadline,
    // not a handshake that hangs with the database.
    let asked = Instant::now();
    let answer = Client::connect(cluster.addr(0)).ask(&login("eve", PASSWORD));
    let login_took = asked.elapsed();
    assert!(
        matches!(
            answer,
            Answer::Refused {
                code: ErrorCode::Unavailable,
                ..
            }
        ),
        "{answer:?}"
    );
    // The established session echoes throughout (the hang lasts 12 s).
    for i in 0..40 {
        assert_eq!(established.echo(&format!("hung {i}")), format!("hung {i}"));
        if hung.elapsed() > Duration::from_secs(12) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let hung_for = hung.elapsed();
    drop(frozen);
    let healthy = healthz_becomes(http, "200", Duration::from_secs(15));
    eprintln!(
        "database SIGSTOPped {hung_for:?}: a login answered `unavailable` after {login_took:?}; \
         /healthz 503 after {unhealthy:?}; 200 again {healthy:?} after SIGCONT"
    );
    assert!(
        login_took < Duration::from_secs(4),
        "login took {login_took:?}"
    );
    let unhealthy = unhealthy.expect("/healthz never said the store is unavailable");
    assert!(unhealthy < Duration::from_secs(10), "{unhealthy:?}");
    let healthy = healthy.expect("/healthz not 200 again within 15 s");
    assert!(healthy < Duration::from_secs(10), "{healthy:?}");
    assert_eq!(established.echo("after"), "after");
    match Client::connect(cluster.addr(0)).ask(&login("eve", PASSWORD)) {
        Answer::Welcome(_) => {}
        other => panic!("not served after the database answered again: {other:?}"),
    }
}
