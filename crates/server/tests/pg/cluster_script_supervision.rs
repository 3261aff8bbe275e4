//! `scripts/cluster.sh` supervises its servers: one killed with `kill -9`
//! is logged, taken out by HAProxy, its clients resume on another server
//! with their tokens, and the script starts it again on the same ports;
//! PostgreSQL ending stops the cluster, saying so.
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
    cluster::{Answer, Client, UNLIMITED, dial_from},
    cluster_script::{Banner, ClusterScript, Ports, http_get},
    haproxy::{haproxy, statuses},
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
/// token, and the client.
fn resume_through(lb: SocketAddr, token: &Secret) -> (Client, Secret) {
    let mut client = Client::over(dial_from(FROM, lb));
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

#[test]
fn a_killed_server_is_logged_its_clients_resume_and_the_script_restarts_it() {
    let Some((mut script, banner, _config)) = cluster_up() else {
        return;
    };
    let lb = script.ports.lb_addr();
    let mut clients: Vec<(Client, Secret)> = (0..6)
        .map(|i| {
            let mut client = Client::over(dial_from(FROM, lb));
            match client.ask(&register(&format!("k{i}"), PASSWORD)) {
                Answer::Welcome(token) => (client, token),
                other => panic!("{other:?}"),
            }
        })
        .collect();
    // leastconn spreads six clients over the three; kill one that has some.
    let (victim, before) = (0..3)
        .map(|i| (i, connections(&banner.servers[i].log)))
        .find(|(_, n)| *n > 0)
        .expect("no server got a client");
    let old_pid = banner.servers[victim].pid;
    let killed = Instant::now();
    nix::sys::signal::kill(Pid::from_raw(old_pid), Signal::SIGKILL).unwrap();
    let mut resumed = 0;
    for (client, token) in &mut clients {
        if still_echoes(client) {
            continue;
        }
        let (mut again, next) = resume_through(lb, token);
        assert_eq!(again.echo("back"), "back");
        (*client, *token) = (again, next);
        resumed += 1;
    }
    let resumed_in = killed.elapsed();
    assert_eq!(resumed, before, "every client of the killed server resumed");
    let n = victim + 1;
    let death = format!("cluster.sh: server {n} (pid {old_pid}) exited with status 137 (SIGKILL)");
    assert!(
        script.stderr_says(&death, Duration::from_secs(10)),
        "{}",
        script.said()
    );
    let new_pid = restarted_pid(&script, n);
    assert_ne!(new_pid, old_pid);
    let health = script.ports.health[victim];
    let healthy = wait_until(Duration::from_secs(20), || {
        http_get(health, "/healthz").is_some_and(|(code, _)| code == 200)
    });
    assert!(healthy, "/healthz never 200 again: {}", script.said());
    let back_in = killed.elapsed();
    let all_up = wait_until(Duration::from_secs(20), || {
        statuses(script.ports.stats) == ["UP", "UP", "UP"]
    });
    assert!(all_up, "HAProxy: {:?}", statuses(script.ports.stats));
    eprintln!(
        "cluster.sh, kill -9 of server {n}: {resumed} client(s) resumed in {resumed_in:?}, \
         server back (/healthz 200) in {back_in:?}"
    );
    // leastconn sends new clients to the restarted server, the one with
    // none: within a few connections its log shows one.
    let log = &banner.servers[victim].log;
    let mut held = Vec::new();
    let routed = (0..10).any(|_| {
        held.push(resume_through(lb, &clients[0].1));
        clients[0].1 = held.last().unwrap().1.clone();
        connections(log) > before
    });
    assert!(routed, "HAProxy sent nothing to the restarted server");
    for (client, _) in &mut clients {
        assert!(still_echoes(client), "a client stopped echoing");
    }
    assert!(script.interrupt(Duration::from_secs(30)).is_some());
    assert!(!banner.work.exists(), "{}", banner.work.display());
    assert_eq!(script.processes_left(), Vec::<String>::new());
}

#[test]
fn postgres_ending_stops_the_cluster_saying_so() {
    let Some((mut script, banner, _config)) = cluster_up() else {
        return;
    };
    let pid = banner.postgres_pid;
    nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let status = script.wait_exit(Duration::from_secs(60));
    let status = status.unwrap_or_else(|| panic!("still running: {}", script.said()));
    assert!(!status.success(), "{}", script.said());
    let stderr = script.stderr();
    let line = format!("cluster.sh: PostgreSQL (pid {pid}) ended; stopping the cluster");
    assert!(stderr.contains(&line), "{}", script.said());
    assert!(
        stderr.contains("cluster.sh: the last lines of PostgreSQL's log"),
        "{}",
        script.said()
    );
    assert!(!banner.work.exists(), "{}", banner.work.display());
    assert_eq!(script.processes_left(), Vec::<String>::new());
}
