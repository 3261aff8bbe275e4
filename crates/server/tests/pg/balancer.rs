//! Three real `echo-server`s on one throwaway PostgreSQL behind a real
//! HAProxy with `config/haproxy.cfg` (send-proxy-v2, leastconn, health checks
//! on `/healthz`): clients are known by their own address whichever server
//! answers, limits per address hold across servers, and a server killed with
//! `kill -9` is taken out, its clients resume elsewhere, and it is put back
//! after a restart. HAProxy is used when installed; otherwise one line says
//! the tests were skipped, unless `ECHO_TEST_HAPROXY=require`.
#![allow(clippy::unwrap_used)]

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use echo_proto::{
    ClientMsg, ErrorCode, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};
use echo_testkit::{PASSWORD, login, register, resume};
use echo_testkit::{
    ServerProcess,
    cluster::{Answer, Client, dial_from},
    free_port,
    haproxy::haproxy,
    postgres::Postgres,
};

/// One echo-server behind the balancer: its ports stay the same across a
/// restart.
struct Backend {
    dir: tempfile::TempDir,
    args: Vec<String>,
    process: Option<ServerProcess>,
    health: u16,
}

impl Backend {
    fn start(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let process = ServerProcess::start(self.dir.path(), &args, &[]);
        assert!(
            process.first_line.starts_with("listening on"),
            "{}",
            process.first_line
        );
        self.process = Some(process);
    }

    fn kill_9(&mut self) {
        let process = self.process.take().unwrap();
        process.signal(nix::sys::signal::Signal::SIGKILL);
        drop(process);
    }

    /// How many connections from `source` this server has logged.
    fn connections_from(&self, source: &str) -> usize {
        echo_testkit::read_logs(self.dir.path())
            .lines()
            .filter(|line| line.contains(&format!("peer={source}:")) && line.contains(" connected"))
            .count()
    }
}

/// PostgreSQL, three servers and HAProxy.
struct Balanced {
    _pg: Postgres,
    backends: Vec<Backend>,
    haproxy: Child,
    lb: std::net::SocketAddr,
    stats: u16,
    _config: tempfile::TempDir,
}

impl Balanced {
    fn start(mode: &str, config: &str) -> Option<Self> {
        let haproxy_bin = haproxy()?;
        let pg = Postgres::start()?;
        let config_dir = tempfile::tempdir().unwrap();
        let config_file = config_dir.path().join("server.toml");
        std::fs::write(&config_file, config).unwrap();
        let mut backends: Vec<Backend> = (0..3)
            .map(|_| {
                let (port, health) = (free_port(), free_port());
                let args = [
                    "--port",
                    &port.to_string(),
                    "--mode",
                    mode,
                    "--store",
                    &pg.url(),
                    "--proxy-protocol-from",
                    "127.0.0.1/32",
                    "--metrics-addr",
                    &format!("127.0.0.1:{health}"),
                    "--config",
                    &config_file.display().to_string(),
                ];
                Backend {
                    dir: tempfile::tempdir().unwrap(),
                    args: args.iter().map(|a| a.to_string()).collect(),
                    process: None,
                    health,
                }
            })
            .collect();
        for backend in &mut backends {
            backend.start();
        }
        // HAProxy binds two ports picked beforehand; another test may take
        // one in between (tests run in parallel), so a HAProxy that exits at
        // once is started again on fresh ports.
        let mut attempts = 0;
        let (haproxy, lb_port, stats) = loop {
            let (lb_port, stats) = (free_port(), free_port());
            let mut command = haproxy_command(&haproxy_bin, lb_port, stats, &backends);
            let mut child = command.spawn().unwrap();
            attempts += 1;
            let exited = echo_testkit::wait_until(Duration::from_millis(500), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            if !exited || attempts == 3 {
                break (child, lb_port, stats);
            }
        };
        let balanced = Self {
            _pg: pg,
            backends,
            haproxy,
            lb: format!("127.0.0.1:{lb_port}").parse().unwrap(),
            stats,
            _config: config_dir,
        };
        balanced.wait_for(|status| status.iter().all(|s| s == "UP"), "every server up");
        Some(balanced)
    }

    /// Each server's status as HAProxy's health checks see it (UP, DOWN, ...).
    fn statuses(&self) -> Vec<String> {
        echo_testkit::haproxy::statuses(self.stats)
    }

    fn wait_for(&self, done: impl Fn(&[String]) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let statuses = self.statuses();
            if statuses.len() == 3 && done(&statuses) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "HAProxy never saw {what}: {statuses:?} (servers running: {:?})",
                self.backends
                    .iter()
                    .map(|b| b.process.is_some())
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Balanced {
    fn drop(&mut self) {
        let _ = self.haproxy.kill();
        let _ = self.haproxy.wait();
    }
}

fn whoami(stream: &mut std::net::TcpStream) -> String {
    let say = ClientMsg::Say {
        id: 7,
        text: "/whoami".into(),
    };
    stream.send_msg(&say).unwrap();
    match stream.recv_msg::<ServerMsg>().unwrap() {
        Some(ServerMsg::Reply { text, .. }) => text,
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn a_client_is_known_by_its_own_address_whichever_server_answers() {
    let Some(cluster) = Balanced::start("ident", "") else {
        return;
    };
    let mut first = dial_from("127.0.0.5", cluster.lb);
    assert!(matches!(
        first.recv_msg::<ServerMsg>().unwrap(),
        Some(ServerMsg::AskName {})
    ));
    first
        .send_msg(&ClientMsg::Name { name: "Ida".into() })
        .unwrap();
    assert!(matches!(
        first.recv_msg::<ServerMsg>().unwrap(),
        Some(ServerMsg::Greet { known: false, .. })
    ));
    let shown = whoami(&mut first);
    assert!(
        shown.contains("from 127.0.0.5:") && shown.contains("via 127.0.0.1:"),
        "{shown}"
    );
    drop(first);
    for _ in 0..6 {
        let mut again = dial_from("127.0.0.5", cluster.lb);
        match again.recv_msg::<ServerMsg>().unwrap() {
            Some(ServerMsg::Greet { name, known: true }) => assert_eq!(name, "Ida"),
            other => panic!("expected to be greeted as Ida, got {other:?}"),
        }
    }
    let served_by = cluster
        .backends
        .iter()
        .filter(|b| b.connections_from("127.0.0.5") > 0)
        .count();
    assert!(served_by >= 2, "only {served_by} server(s) saw the client");
}

#[test]
fn failures_from_one_address_are_limited_across_servers() {
    let Some(cluster) = Balanced::start("auth", "auth_attempts_per_minute = 4\n") else {
        return;
    };
    Client::over(dial_from("127.0.0.9", cluster.lb)).ask(&register("gus", PASSWORD));
    for _ in 0..4 {
        let answer =
            Client::over(dial_from("127.0.0.6", cluster.lb)).ask(&login("gus", "wrong password 1"));
        answer.assert_refused(ErrorCode::InvalidCredentials);
    }
    let answer =
        Client::over(dial_from("127.0.0.6", cluster.lb)).ask(&login("gus", "wrong password 1"));
    answer.assert_refused(ErrorCode::RateLimited);
    // Another address is not affected.
    let answer =
        Client::over(dial_from("127.0.0.7", cluster.lb)).ask(&login("gus", "wrong password 1"));
    answer.assert_refused(ErrorCode::InvalidCredentials);
    let servers = cluster
        .backends
        .iter()
        .filter(|b| b.connections_from("127.0.0.6") > 0)
        .count();
    assert!(
        servers >= 2,
        "the attempts reached only {servers} server(s)"
    );
}

#[test]
fn a_killed_server_is_taken_out_its_clients_resume_elsewhere_and_it_comes_back() {
    let unlimited = "auth_attempts_per_minute = 100000\n";
    let Some(mut cluster) = Balanced::start("auth", unlimited) else {
        return;
    };
    let mut clients: Vec<(Client, echo_proto::Secret)> = (0..6)
        .map(|i| {
            let mut client = Client::over(dial_from("127.0.0.8", cluster.lb));
            match client.ask(&register(&format!("k{i}"), PASSWORD)) {
                Answer::Welcome(token) => (client, token),
                other => panic!("{other:?}"),
            }
        })
        .collect();
    let on_s1_before = cluster.backends[0].connections_from("127.0.0.8");
    assert!(on_s1_before > 0, "leastconn put none of six clients on s1");
    cluster.backends[0].kill_9();
    // Those that were on s1 find their connection gone, come back through
    // the balancer and resume on another server.
    let mut resumed = 0;
    for (client, token) in &mut clients {
        client
            .0
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let alive = client
            .0
            .send_msg(&ClientMsg::Say {
                id: 1,
                text: "ping".into(),
            })
            .is_ok()
            && matches!(
                client.0.recv_msg::<ServerMsg>(),
                Ok(Some(ServerMsg::Reply { .. }))
            );
        if alive {
            continue;
        }
        let mut again = Client::over(dial_from("127.0.0.8", cluster.lb));
        match again.ask(&resume(token)) {
            Answer::Welcome(next) => *token = next,
            other => panic!("resume after the server died: {other:?}"),
        }
        assert_eq!(again.echo("back"), "back");
        resumed += 1;
    }
    assert_eq!(
        resumed, on_s1_before,
        "every client of the killed server resumed elsewhere"
    );
    eprintln!("kill -9: {resumed} of 6 clients were on the killed server and resumed elsewhere");
    let taken_out = Instant::now();
    cluster.wait_for(|s| s[0] == "DOWN", "s1 taken out");
    eprintln!(
        "HAProxy marked it DOWN {:?} after the clients had resumed",
        taken_out.elapsed()
    );
    cluster.backends[0].start();
    cluster.wait_for(|s| s.iter().all(|s| s == "UP"), "s1 put back");
    for _ in 0..6 {
        Client::over(dial_from("127.0.0.8", cluster.lb)).ask(&login("k0", PASSWORD));
    }
    assert!(
        cluster.backends[0].connections_from("127.0.0.8") > on_s1_before,
        "the restarted server got no new connection"
    );
}

/// HAProxy with `config/haproxy.cfg`, balancing `backends` on `lb_port`.
fn haproxy_command(bin: &Path, lb_port: u16, stats: u16, backends: &[Backend]) -> Command {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/haproxy.cfg");
    let mut command = Command::new(bin);
    command
        .arg("-f")
        .arg(cfg)
        .env("ECHO_LB_PORT", lb_port.to_string())
        .env("ECHO_LB_STATS_PORT", stats.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (i, backend) in backends.iter().enumerate() {
        let port = backend.process.as_ref().unwrap().addr().port();
        command.env(format!("ECHO_S{}_PORT", i + 1), port.to_string());
        command.env(
            format!("ECHO_S{}_HEALTH", i + 1),
            backend.health.to_string(),
        );
    }
    command
}
