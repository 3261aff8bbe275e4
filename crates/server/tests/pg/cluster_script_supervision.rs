//! `scripts/cluster.sh` supervises its servers: one killed with `kill -9`
//! is logged, taken out by HAProxy, its clients resume on another server
//! with their tokens, and the script starts it again on the same ports;
//! PostgreSQL or HAProxy ending stops the cluster, saying which.
#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use echo_proto::{
    ClientMsg, Secret, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};
use echo_testkit::{
    PASSWORD,
    cluster::{Answer, Client, UNLIMITED, dial_from, try_dial_from},
    cluster_script::{Banner, ClusterScript, Ports, http_get},
    haproxy::{haproxy, statuses},
    login,
    postgres::Postgres,
    register, resume, wait_until,
};
use nix::{sys::signal::Signal, unistd::Pid};

/// The address every client of these tests connects from.
const FROM: &str = "127.0.0.8";

/// The script, up, with a config file lifting the per-address limits
/// (every client comes from [`FROM`]); `None` where HAProxy or PostgreSQL
/// is missing.
fn cluster_up() -> Option<(ClusterScript, Banner, tempfile::NamedTempFile)> {
    if haproxy().is_none() || !Postgres::available() {
        return None;
    }
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), UNLIMITED).unwrap();
    let config_path = config.path().display().to_string();
    let mut script = ClusterScript::spawn(
        Ports::free(),
        &[("ECHO_SERVER_CONFIG", config_path.as_str())],
    );
    let banner = script.wait_up(Duration::from_secs(90));
    Some((script, banner, config))
}

/// Connections from [`FROM`] that a server's log shows.
fn connections(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(&format!("peer={FROM}:")) && line.contains(" connected"))
        .count()
}

/// Whether `client`'s connection still echoes (within 2 s).
fn still_echoes(client: &mut Client) -> bool {
    client
        .0
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let say = ClientMsg::Say {
        id: 1,
        text: "ping".into(),
    };
    client.0.send_msg(&say).is_ok()
        && matches!(
            client.0.recv_msg::<ServerMsg>(),
            Ok(Some(ServerMsg::Reply { .. }))
        )
}

/// A new connection through the balancer, resumed with `token`: the next
/// token, and the client. Until HAProxy's checks have taken a dead server
/// out, a connection sent to it is closed before `hello`: the client tries
/// again, as a real one would (20 times at most, 0.2 s apart).
fn resume_through(lb: SocketAddr, token: &Secret) -> (Client, Secret) {
    let stream = (0..20)
        .find_map(|_| {
            try_dial_from(FROM, lb).or_else(|| {
                std::thread::sleep(Duration::from_millis(200));
                None
            })
        })
        .expect("no server answered through the balancer in 20 tries");
    let mut client = Client::over(stream);
    match client.ask(&resume(token)) {
        Answer::Welcome(next) => (client, next),
        other => panic!("resume through the balancer: {other:?}"),
    }
}

/// The pid in `server N restarted: pid P on ...`, once stderr says it.
fn restarted_pid(script: &ClusterScript, n: usize) -> i32 {
    let line = format!("cluster.sh: server {n} restarted: pid ");
    assert!(
        script.stderr_says(&line, Duration::from_secs(30)),
        "server {n} was not restarted: {}",
        script.said()
    );
    let stderr = script.stderr();
    let rest = &stderr[stderr.find(&line).unwrap() + line.len()..];
    rest.split(' ').next().unwrap().parse().unwrap()
}

/// Six clients through the balancer, each registered: the clients and
/// their tokens.
fn registered_clients(lb: SocketAddr) -> Vec<(Client, Secret)> {
    (0..6)
        .map(|i| {
            let mut client = Client::over(dial_from(FROM, lb));
            match client.ask(&register(&format!("k{i}"), PASSWORD)) {
                Answer::Welcome(token) => (client, token),
                other => panic!("{other:?}"),
            }
        })
        .collect()
}

/// Each client whose connection died comes back through the balancer and
/// resumes with its token; how many did.
fn resume_the_dead(lb: SocketAddr, clients: &mut [(Client, Secret)]) -> usize {
    let mut resumed = 0;
    for (client, token) in clients {
        if still_echoes(client) {
            continue;
        }
        let (mut again, next) = resume_through(lb, token);
        assert_eq!(again.echo("back"), "back");
        (*client, *token) = (again, next);
        resumed += 1;
    }
    resumed
}

/// Server `i` (from 0), killed as `old_pid`: the script says it died and
/// restarted it, and its `/healthz` answers 200 again.
fn assert_logged_and_restarted(script: &ClusterScript, i: usize, old_pid: i32) {
    let n = i + 1;
    let death = format!("cluster.sh: server {n} (pid {old_pid}) exited with status 137 (SIGKILL)");
    assert!(
        script.stderr_says(&death, Duration::from_secs(10)),
        "{}",
        script.said()
    );
    assert_ne!(restarted_pid(script, n), old_pid);
    let health = script.ports.health[i];
    let healthy = wait_until(Duration::from_secs(20), || {
        http_get(health, "/healthz").is_some_and(|(code, _)| code == 200)
    });
    assert!(healthy, "/healthz never 200 again: {}", script.said());
}

#[test]
fn a_killed_server_is_logged_its_clients_resume_and_the_script_restarts_it() {
    let Some((mut script, banner, _config)) = cluster_up() else {
        return;
    };
    let lb = script.ports.lb_addr();
    let mut clients = registered_clients(lb);
    // leastconn spreads six clients over the three; kill one that has some.
    let (victim, before) = (0..3)
        .map(|i| (i, connections(&banner.servers[i].log)))
        .find(|(_, n)| *n > 0)
        .expect("no server got a client");
    let old_pid = banner.servers[victim].pid;
    let killed = Instant::now();
    nix::sys::signal::kill(Pid::from_raw(old_pid), Signal::SIGKILL).unwrap();
    let resumed = resume_the_dead(lb, &mut clients);
    let resumed_in = killed.elapsed();
    assert_eq!(resumed, before, "every client of the killed server resumed");
    assert_logged_and_restarted(&script, victim, old_pid);
    let back_in = killed.elapsed();
    let all_up = wait_until(Duration::from_secs(20), || {
        statuses(script.ports.stats) == ["UP", "UP", "UP"]
    });
    assert!(all_up, "HAProxy: {:?}", statuses(script.ports.stats));
    eprintln!(
        "cluster.sh, kill -9 of server {}: {resumed} client(s) resumed in {resumed_in:?}, \
         server back (/healthz 200) in {back_in:?}, UP in HAProxy in {:?}",
        victim + 1,
        killed.elapsed()
    );
    // leastconn sends new clients to the restarted server, the one with
    // none: within a few connections its log shows one.
    let mut held = Vec::new();
    let routed = (0..10).any(|_| {
        let mut client = Client::over(dial_from(FROM, lb));
        client.ask(&login("k0", PASSWORD));
        held.push(client);
        connections(&banner.servers[victim].log) > before
    });
    assert!(routed, "HAProxy sent nothing to the restarted server");
    for (client, _) in &mut clients {
        assert!(still_echoes(client), "a client stopped echoing");
    }
    assert!(script.interrupt(Duration::from_secs(30)).is_some());
    assert!(!banner.work.exists(), "{}", banner.work.display());
    assert_eq!(script.processes_left(), Vec::<String>::new());
}

/// Kills `what` (its pid in the banner) with SIGKILL under the script: the
/// script must stop the cluster, saying which ended, with its log's last
/// lines.
fn ending_stops_the_cluster(what: &str, pid_of: fn(&Banner) -> i32) {
    let Some((mut script, banner, _config)) = cluster_up() else {
        return;
    };
    let pid = pid_of(&banner);
    nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let status = script.wait_exit(Duration::from_secs(60));
    let status = status.unwrap_or_else(|| panic!("still running: {}", script.said()));
    assert!(!status.success(), "{}", script.said());
    let stderr = script.stderr();
    let line = format!("cluster.sh: {what} (pid {pid}) ");
    assert!(
        stderr.contains(&line) && stderr.contains("; stopping the cluster\n"),
        "{}",
        script.said()
    );
    assert!(
        stderr.contains(&format!("cluster.sh: the last lines of {what}'s log"))
            || stderr.contains(&format!("cluster.sh: {what}'s log (")),
        "{}",
        script.said()
    );
    assert!(!banner.work.exists(), "{}", banner.work.display());
    assert_eq!(script.processes_left(), Vec::<String>::new());
}

#[test]
fn postgres_ending_stops_the_cluster_saying_so() {
    ending_stops_the_cluster("PostgreSQL", |banner| banner.postgres_pid);
}

#[test]
fn haproxy_ending_stops_the_cluster_saying_so() {
    ending_stops_the_cluster("HAProxy", |banner| banner.haproxy_pid);
}
