//! `scripts/rolling-upgrade.sh`: the three servers of `scripts/cluster.sh`
//! upgraded one after the other while sessions talk through HAProxy. No
//! client sees an error: each `bye` is `restart`, each reconnect through
//! the balancer is let in with the session's token, every line is answered
//! once; and cluster.sh watches the new processes instead of restarting.
#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use echo_proto::{
    ByeReason, ClientMsg, Secret, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};
use echo_testkit::{
    PASSWORD,
    cluster::{Answer, Client, UNLIMITED, dial_from, try_dial_from},
    cluster_script::{Banner, ClusterScript, Ports},
    haproxy::haproxy,
    postgres::Postgres,
    register, resume, server_binary,
};

/// The address every client of this test connects from.
const FROM: &str = "127.0.0.9";

/// Sessions talking through the balancer during the rolling upgrade.
const SESSIONS: usize = 12;

/// What one session saw.
#[derive(Debug, Default)]
struct Seen {
    answered: u64,
    restarts: u64,
    /// Connections closed before their `welcome`, tried again.
    retries: u64,
    longest_gap: Duration,
}

/// A connection through the balancer, resumed with `token`. As `echo-client` does, a connection
/// closed before its `welcome` (the balancer found no server yet, or a
/// server handing over took it) is tried again, 20 times at most; `tries`
/// counts those.
fn enter(lb: SocketAddr, token: &Secret, user: &str, tries: &mut u64) -> (Client, Secret) {
    for _ in 0..20 {
        let Some(mut stream) = try_dial_from(FROM, lb) else {
            *tries += 1;
            thread::sleep(Duration::from_millis(100));
            continue;
        };
        let ask = resume(token);
        let answer = match stream.recv_msg::<ServerMsg>() {
            Ok(Some(ServerMsg::AskAuth { .. })) => {
                let _ = stream.send_msg(&ask);
                stream.recv_msg::<ServerMsg>()
            }
            other => other,
        };
        match answer {
            Ok(Some(ServerMsg::Welcome { token, .. })) => return (Client(stream), token),
            Ok(None) | Err(_) => {
                *tries += 1;
                thread::sleep(Duration::from_millis(100));
            }
            Ok(Some(other)) => panic!("{user} through the balancer: {other:?}"),
        }
    }
    panic!("{user}: no server let it in through the balancer in 20 tries")
}

/// One session: says numbered lines one at a time until `stop` (60 s at
/// most); on `bye restart` comes back through the balancer with its token
/// and says the unanswered line again. Anything else fails the test.
fn talk(lb: SocketAddr, user: String, token: Secret, stop: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::default();
    let (mut client, mut token) = enter(lb, &token, &user, &mut seen.retries);
    let (started, mut last) = (Instant::now(), Instant::now());
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
        let text = format!("{user} {n}");
        // A write to a connection the server already left is read as its
        // `bye` next.
        let _ = client.0.send_msg(&ClientMsg::Say {
            id: n,
            text: text.clone(),
        });
        match client.0.recv_msg::<ServerMsg>() {
            Ok(Some(ServerMsg::Reply {
                re,
                text: got,
                last: true,
            })) => {
                assert_eq!((re, got.as_str()), (n, text.as_str()));
                seen.answered += 1;
                seen.longest_gap = seen.longest_gap.max(last.elapsed());
                last = Instant::now();
                n += 1;
                thread::sleep(Duration::from_millis(20));
            }
            Ok(Some(ServerMsg::Bye {
                reason: ByeReason::Restart,
                ..
            })) => {
                seen.restarts += 1;
                (client, token) = enter(lb, &token, &user, &mut seen.retries);
            }
            other => panic!("{user}: a client error through the balancer: {other:?}"),
        }
    }
    seen
}

/// The users first, one at a time: a password takes a while to hash on a
/// busy machine, and is not what this test is about. Their tokens.
fn register_users(lb: SocketAddr) -> Vec<(String, Secret)> {
    (0..SESSIONS)
        .map(|i| {
            let user = format!("roll{i}");
            let mut client = Client::over(dial_from(FROM, lb));
            client
                .0
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            match client.ask(&register(&user, PASSWORD)) {
                Answer::Welcome(token) => (user, token),
                other => panic!("{user}: {other:?}"),
            }
        })
        .collect()
}

/// `scripts/rolling-upgrade.sh` on the running cluster: what it printed,
/// and how long it took.
fn roll(script: &ClusterScript, banner: &Banner) -> (String, Duration) {
    let started = Instant::now();
    let rolled = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/rolling-upgrade.sh"
        ))
        .arg(&banner.work)
        .env("ECHO_SERVER_BIN", server_binary())
        .env("ECHO_LB_STATS_PORT", script.ports.stats.to_string())
        .output()
        .unwrap();
    let took = started.elapsed();
    let said = String::from_utf8_lossy(&rolled.stdout).into_owned();
    let errors = String::from_utf8_lossy(&rolled.stderr);
    assert!(rolled.status.success(), "{said}{errors}\n{}", script.said());
    (said, took)
}

/// Each server was upgraded (the script's line), and cluster.sh took its
/// new process on rather than restarting it.
fn assert_handed_over(script: &ClusterScript, banner: &Banner, said: &str) {
    for (i, server) in banner.servers.iter().enumerate() {
        let n = i + 1;
        let line = format!("server {n}: pid {} -> pid ", server.pid);
        assert!(said.contains(&line), "{said}");
        let handed = format!("server {n} (pid {}) handed over to pid ", server.pid);
        let took_on = script.stderr_says(&handed, Duration::from_secs(5));
        assert!(took_on, "{}", script.said());
    }
    assert!(
        !script.stderr().contains("restarting it"),
        "{}",
        script.said()
    );
}

#[test]
fn a_rolling_upgrade_through_haproxy_gives_no_client_an_error() {
    if haproxy().is_none() || !Postgres::available() {
        return;
    }
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), UNLIMITED).unwrap();
    let config_path = config.path().display().to_string();
    let mut script = ClusterScript::spawn(
        Ports::free(),
        &[("ECHO_SERVER_CONFIG", config_path.as_str())],
    );
    let banner = script.wait_up(Duration::from_secs(90));
    let lb = script.ports.lb_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let sessions: Vec<_> = register_users(lb)
        .into_iter()
        .map(|(user, token)| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || talk(lb, user, token, stop))
        })
        .collect();
    thread::sleep(Duration::from_secs(1));
    let (said, took) = roll(&script, &banner);
    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = sessions.into_iter().map(|s| s.join().unwrap()).collect();
    assert_handed_over(&script, &banner, &said);
    let restarts: u64 = seen.iter().map(|s| s.restarts).sum();
    assert!(
        restarts >= SESSIONS as u64,
        "every session met an upgrade: {seen:?}"
    );
    let answered: u64 = seen.iter().map(|s| s.answered).sum();
    let retries: u64 = seen.iter().map(|s| s.retries).sum();
    let mut gaps: Vec<Duration> = seen.iter().map(|s| s.longest_gap).collect();
    gaps.sort();
    println!(
        "rolling upgrade of 3 servers through HAProxy in {took:.1?}: {SESSIONS} sessions, \
         {answered} lines answered, 0 errors, {restarts} resumes ({retries} connections \
         tried again); longest gap per session p50 {:?}, max {:?}",
        gaps[SESSIONS / 2],
        gaps[SESSIONS - 1]
    );
    // Ctrl-C stops the new processes too: nothing is left.
    let status = script.interrupt(Duration::from_secs(30));
    assert!(
        status.is_some(),
        "the script did not stop: {}",
        script.said()
    );
    assert_eq!(script.processes_left(), Vec::<String>::new());
}
