//! A primary with a synchronous standby under two servers (#29): `kill -9`
//! of the primary while registrations, logins, resumes and rotations run,
//! then the standby promoted. Nothing the servers acknowledged is lost, and
//! both servers follow the new primary by themselves.
#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use echo_proto::{ByeCause, ByeReason, ClientMsg, ErrorCode, Secret, ext::BlockingFrameWrite};
use echo_testkit::{PASSWORD, login, register, resume};
use echo_testkit::{
    cluster::{Answer, Client, Cluster, UNLIMITED},
    pg_ha::multi_host_url,
    postgres::Postgres,
    relay::Relay,
};

/// Every call that the database does not answer within 2 s is `unavailable`.
fn config() -> String {
    format!("{UNLIMITED}store_timeout = 2\n")
}

/// What one load worker was told.
#[derive(Default)]
struct Acked {
    /// Registrations welcomed.
    registered: Vec<String>,
    /// Every token a welcome gave (logins and rotations).
    given: Vec<Secret>,
    /// The last token each chain was given, and whether a rotation of it
    /// was asked for later but never answered (it may have happened).
    last: Vec<(Secret, bool)>,
}

/// Registers new users on `addr` until `stop`.
fn registrar(addr: SocketAddr, worker: usize, stop: &AtomicBool, count: &AtomicUsize) -> Acked {
    let mut acked = Acked::default();
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let name = format!("reg{worker}n{i}");
        match Answer::try_at(addr, &register(&name, PASSWORD)) {
            Some(Answer::Welcome(_)) => {
                acked.registered.push(name);
                count.fetch_add(1, Ordering::SeqCst);
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    acked
}

/// Logs `user` in, then rotates the chain by resuming on each server in
/// turn until `stop`; a chain whose rotation goes unanswered is left (it
/// is in doubt) and a new one logged in.
fn rotator(addrs: [SocketAddr; 2], user: &str, stop: &AtomicBool, count: &AtomicUsize) -> Acked {
    let mut acked = Acked::default();
    let mut chain: Option<Secret> = None;
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let addr = addrs[i % 2];
        let asked = match &chain {
            Some(token) => resume(token),
            None => login(user, PASSWORD),
        };
        match Answer::try_at(addr, &asked) {
            Some(Answer::Welcome(token)) => {
                acked.given.push(token.clone());
                chain = Some(token);
                count.fetch_add(1, Ordering::SeqCst);
            }
            _ => {
                if let Some(token) = chain.take() {
                    acked.last.push((token, true));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    if let Some(token) = chain {
        acked.last.push((token, false));
    }
    acked
}

/// How many of `tokens` the database at `pg` holds (current or rotated
/// away: `session_tokens` keeps every token of a live chain).
fn stored(pg: &Postgres, tokens: &[Secret]) -> usize {
    tokens
        .chunks(100)
        .map(|chunk| {
            let hashes: Vec<String> = chunk
                .iter()
                .map(|t| format!("sha256(convert_to('{}', 'UTF8'))", t.expose()))
                .collect();
            let query = format!(
                "SELECT count(*) FROM session_tokens WHERE hash IN ({})",
                hashes.join(",")
            );
            pg.psql(&query).trim().parse::<usize>().unwrap()
        })
        .sum()
}

/// A chain rotated once before the failover and left idle: its first
/// token is rotated away, its second is the one to resume with.
struct Settled {
    rotated_away: Secret,
    last: Secret,
}

impl Settled {
    fn make(cluster: &Cluster, name: &str, on: usize) -> Self {
        let (_, first) = Client::welcomed(cluster.addr(on), &register(name, PASSWORD));
        let (_, last) = Client::welcomed(cluster.addr(1 - on), &resume(&first));
        Self {
            rotated_away: first,
            last,
        }
    }
}

/// One chain with a live connection on each server.
fn live_on_both(cluster: &Cluster, name: &str, first: usize) -> (Client, Client) {
    let (on_first, token) = Client::welcomed(cluster.addr(first), &register(name, PASSWORD));
    let (on_second, _) = Client::welcomed(cluster.addr(1 - first), &resume(&token));
    (on_first, on_second)
}

/// How long until every server's `/healthz` is `code` (at most `limit`).
fn all_healthz(cluster: &Cluster, code: u16, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let all = echo_testkit::wait_until(limit, || {
        (0..cluster.servers.len()).all(|i| cluster.healthz(i) == Some(code))
    });
    all.then(|| started.elapsed())
}

/// The first welcome to a login on `addr` (tried every 20 ms): when.
fn first_login(addr: SocketAddr, user: &str, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(Answer::Welcome(_)) = Answer::try_at(addr, &login(user, PASSWORD)) {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn kill_9_of_the_primary_loses_nothing_acknowledged_and_both_servers_follow_the_promoted_standby() {
    let Some(primary) = Postgres::start() else {
        return;
    };
    // The standby streams through a relay, so that the test can hold its
    // WAL back: with a synchronous standby nothing is acknowledged then.
    let relay = Relay::start(([127, 0, 0, 1], primary.port).into());
    let standby = primary.start_standby(relay.port);
    primary.make_synchronous();
    let url = multi_host_url(&[primary.port, standby.port]);
    let cluster = Cluster::start_at(&url, 2, &config(), true);
    assert!(all_healthz(&cluster, 200, Duration::from_secs(10)).is_some());
    let settled: Vec<Settled> = (0..4)
        .map(|i| Settled::make(&cluster, &format!("settled{i}"), i % 2))
        .collect();
    let live = [
        live_on_both(&cluster, "liveA", 0),
        live_on_both(&cluster, "liveB", 1),
    ];
    for user in ["rot0", "rot1", "probe"] {
        Client::welcomed(cluster.addr(0), &register(user, PASSWORD));
    }
    let (load, stop, count) = start_load(&cluster);
    assert!(
        echo_testkit::wait_until(Duration::from_secs(15), || count.load(Ordering::SeqCst)
            > 20),
        "the load never got going"
    );
    fail_over(&primary, &standby, &relay, &cluster);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<Acked> = load.into_iter().map(|w| w.join().unwrap()).collect();
    check_nothing_lost(&standby, &acked);
    check_chains(&cluster, &settled, &acked);
    check_revocations_reach_both(live);
}

/// The standby's stream held back, then the primary crashes and what the
/// relay held is lost (as the WAL a dead primary never sent is), then the
/// standby is promoted: `/healthz` 503 on both servers while no host
/// accepts writes, then a login and 200 again; the times are printed.
fn fail_over(primary: &Postgres, standby: &Postgres, relay: &Relay, cluster: &Cluster) {
    relay.freeze();
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    primary.crash();
    relay.cut();
    let unhealthy = all_healthz(cluster, 503, Duration::from_secs(10));
    let promotion = standby.promote();
    let promoted = Instant::now();
    let welcomed = first_login(cluster.addr(0), "probe", Duration::from_secs(30))
        .expect("no login was welcomed within 30 s of the promotion");
    let healthy = all_healthz(cluster, 200, Duration::from_secs(15));
    eprintln!(
        "failover: primary killed; both /healthz 503 after {unhealthy:?}; promotion took {promotion:?}; \
         first login {:?} after the promotion, {:?} after the death less the promotion; both /healthz 200 {healthy:?} later",
        welcomed - promoted,
        welcomed - killed - promotion,
    );
    assert!(
        unhealthy.is_some(),
        "/healthz not 503 while no primary was reachable"
    );
    assert!(
        healthy.is_some(),
        "/healthz not 200 again after the promotion"
    );
}

type Load = (
    Vec<std::thread::JoinHandle<Acked>>,
    Arc<AtomicBool>,
    Arc<AtomicUsize>,
);

/// Two registrars and two rotators, one of each on each server first.
fn start_load(cluster: &Cluster) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let addrs = [cluster.addr(0), cluster.addr(1)];
    let mut workers = Vec::new();
    for w in 0..2 {
        let (halt, counted) = (Arc::clone(&stop), Arc::clone(&count));
        workers.push(std::thread::spawn(move || {
            registrar(addrs[w], w, &halt, &counted)
        }));
        let (halt, counted) = (Arc::clone(&stop), Arc::clone(&count));
        let turned = [addrs[w], addrs[1 - w]];
        workers.push(std::thread::spawn(move || {
            rotator(turned, &format!("rot{w}"), &halt, &counted)
        }));
    }
    (workers, stop, count)
}

/// Every acknowledged registration and every token a welcome gave is on
/// the new primary.
fn check_nothing_lost(new_primary: &Postgres, acked: &[Acked]) {
    let users = new_primary.psql("SELECT name FROM users");
    let users: std::collections::HashSet<&str> = users.lines().map(str::trim).collect();
    let registered: Vec<&String> = acked.iter().flat_map(|a| &a.registered).collect();
    let lost: Vec<&&String> = registered
        .iter()
        .filter(|name| !users.contains(name.as_str()))
        .collect();
    assert!(lost.is_empty(), "acknowledged registrations lost: {lost:?}");
    let given: Vec<Secret> = acked.iter().flat_map(|a| a.given.clone()).collect();
    let kept = stored(new_primary, &given);
    eprintln!(
        "failover: {} registrations and {} logins and rotations acknowledged, all on the new primary: {}",
        registered.len(),
        given.len(),
        kept == given.len()
    );
    assert_eq!(
        kept,
        given.len(),
        "acknowledged logins or rotations are not on the new primary"
    );
}

/// The last token of every chain resumes (unless a later rotation went
/// unanswered and did happen); a token rotated away before the failover
/// is caught as reuse, and the chain's live connection is told.
fn check_chains(cluster: &Cluster, settled: &[Settled], acked: &[Acked]) {
    for (token, in_doubt) in acked.iter().flat_map(|a| &a.last) {
        match Answer::try_at(cluster.addr(1), &resume(token)) {
            Some(Answer::Welcome(_)) => {}
            Some(Answer::Refused {
                code: ErrorCode::TokenInvalid,
                ..
            }) if *in_doubt => {}
            other => panic!("the last token given (in doubt: {in_doubt}) got {other:?}"),
        }
    }
    for (i, chain) in settled.iter().enumerate() {
        let (mut held, _) = Client::welcomed(cluster.addr(i % 2), &resume(&chain.last));
        let answer = Client::connect(cluster.addr(1 - i % 2)).ask(&resume(&chain.rotated_away));
        answer.assert_refused(ErrorCode::TokenInvalid);
        assert_eq!(
            held.bye_and_cause_within_a_second(),
            Some((ByeReason::Revoked, Some(ByeCause::Reuse))),
            "a token rotated away before the failover was not caught as reuse"
        );
    }
}

/// A logout after the failover ends the chain's connection on the other
/// server, whichever server it was sent to.
fn check_revocations_reach_both(live: [(Client, Client); 2]) {
    for (mut from, mut other) in live {
        assert_eq!(other.echo("through the failover"), "through the failover");
        from.0.send_msg(&ClientMsg::Logout {}).unwrap();
        assert_eq!(
            other.bye_and_cause_within_a_second(),
            Some((ByeReason::Revoked, Some(ByeCause::Logout))),
            "a logout after the failover did not reach the other server"
        );
    }
}
