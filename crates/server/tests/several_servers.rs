//! Several `echo-server` processes on one throwaway PostgreSQL: what one
//! server does, the others see (sessions, revocations, attempt limits, the
//! admin commands), a server killed with `kill -9` loses no acknowledged
//! user, and a database that goes away and comes back is survived without
//! restarting any server.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use common::{ServerProcess, connect_blocking, postgres::Postgres};
use echo_proto::{
    ByeReason, ClientMsg, ErrorCode, Secret, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};

const PASSWORD: &str = "correct horse battery staple 42";

/// Password attempts a minute per address, unless a test is about them:
/// every test here logs in many times from 127.0.0.1.
const UNLIMITED: &str = "auth_attempts_per_minute = 100000\n";

/// `n` servers on `pg` with the config file `config`, each in a directory
/// of its own.
struct Cluster {
    servers: Vec<(tempfile::TempDir, ServerProcess)>,
    url: String,
    _config: tempfile::TempDir,
}

impl Cluster {
    fn start(pg: &Postgres, n: usize, config: &str) -> Self {
        let url = pg.url();
        let config_dir = tempfile::tempdir().unwrap();
        let config_file = config_dir.path().join("server.toml");
        std::fs::write(&config_file, config).unwrap();
        let config_file = config_file.display().to_string();
        let servers = (0..n)
            .map(|_| {
                let dir = tempfile::tempdir().unwrap();
                let args = [
                    "--port",
                    "0",
                    "--mode",
                    "auth",
                    "--store",
                    &url,
                    "--config",
                    &config_file,
                ];
                let server = ServerProcess::start(dir.path(), &args, &[]);
                assert!(
                    server.first_line.starts_with("listening on"),
                    "{}",
                    server.first_line
                );
                (dir, server)
            })
            .collect();
        Self {
            servers,
            url,
            _config: config_dir,
        }
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.servers[i].1.addr()
    }

    /// `echo-server --store URL ARGS...`, with `stdin`; its output.
    fn admin(&self, args: &[&str], stdin: &str) -> std::process::Output {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_echo-server"))
            .args(["--store", &self.url, "--data-dir"])
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

/// A blocking client past `hello` and `ask_auth`.
struct Client(TcpStream);

/// What an authentication request got.
#[derive(Debug)]
enum Answer {
    Welcome(Secret),
    Refused { code: ErrorCode, fatal: bool },
}

impl Client {
    fn connect(addr: SocketAddr) -> Self {
        let mut stream = connect_blocking(addr);
        match stream.recv_msg::<ServerMsg>().unwrap() {
            Some(ServerMsg::AskAuth { .. }) => Self(stream),
            other => panic!("expected ask_auth, got {other:?}"),
        }
    }

    fn ask(&mut self, msg: &ClientMsg) -> Answer {
        self.0.send_msg(msg).unwrap();
        match self.0.recv_msg::<ServerMsg>().unwrap() {
            Some(ServerMsg::Welcome { token, .. }) => Answer::Welcome(token),
            Some(ServerMsg::Error { code, fatal, .. }) => Answer::Refused { code, fatal },
            other => panic!("unexpected {other:?}"),
        }
    }

    fn welcomed(addr: SocketAddr, msg: &ClientMsg) -> (Self, Secret) {
        let mut client = Self::connect(addr);
        match client.ask(msg) {
            Answer::Welcome(token) => (client, token),
            other => panic!("expected welcome to {msg:?}, got {other:?}"),
        }
    }

    fn echo(&mut self, text: &str) -> String {
        self.0
            .send_msg(&ClientMsg::Say {
                id: 1,
                text: text.into(),
            })
            .unwrap();
        match self.0.recv_msg::<ServerMsg>().unwrap() {
            Some(ServerMsg::Reply { text, .. }) => text,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// The `bye` reason the server sends within a second, if any.
    fn bye_within_a_second(&mut self) -> Option<ByeReason> {
        self.0
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        match self.0.recv_msg::<ServerMsg>() {
            Ok(Some(ServerMsg::Bye { reason })) => Some(reason),
            _ => None,
        }
    }
}

fn register(user: &str) -> ClientMsg {
    ClientMsg::Register {
        user: user.into(),
        password: Secret::new(PASSWORD),
    }
}

fn login(user: &str, password: &str) -> ClientMsg {
    ClientMsg::Login {
        user: user.into(),
        password: Secret::new(password),
    }
}

fn resume(token: &Secret) -> ClientMsg {
    ClientMsg::Resume {
        token: token.clone(),
    }
}

#[test]
fn a_session_made_on_one_server_is_resumed_on_another_and_logout_ends_it_everywhere() {
    let Some(pg) = Postgres::start() else { return };
    let cluster = Cluster::start(&pg, 2, UNLIMITED);
    let (mut on_a, token) = Client::welcomed(cluster.addr(0), &register("ann"));
    let (mut on_b, _) = Client::welcomed(cluster.addr(1), &resume(&token));
    assert_eq!(on_b.echo("hi from b"), "hi from b");
    // The chain now has a live connection on each server; a logout on A
    // ends B's.
    on_a.0.send_msg(&ClientMsg::Logout {}).unwrap();
    assert_eq!(on_b.bye_within_a_second(), Some(ByeReason::Revoked));
}

#[test]
fn the_database_password_never_shows() {
    let Some(pg) = Postgres::start() else { return };
    let secret = "sekrit-db-pw";
    // Trust authentication ignores the password, so the server starts.
    let url = format!(
        "postgres://echo:{secret}@127.0.0.1:{}/echo?sslmode=disable",
        pg.port
    );
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        dir.path(),
        &["--port", "0", "--mode", "auth"],
        &[("ECHO_SERVER_STORE", url.as_str())],
    );
    assert!(
        server.first_line.starts_with("listening on"),
        "{}",
        server.first_line
    );
    drop(server);
    let logs = common::read_logs(dir.path());
    assert!(logs.contains("postgres://echo@127.0.0.1"), "{logs}");
    // An unreachable database: the error names it, not the password.
    let unreachable = format!(
        "postgres://echo:{secret}@127.0.0.1:{}/echo",
        common::free_port()
    );
    let help_and_errors = [
        Command::new(env!("CARGO_BIN_EXE_echo-server"))
            .arg("--help")
            .env("ECHO_SERVER_STORE", &url)
            .output()
            .unwrap(),
        Command::new(env!("CARGO_BIN_EXE_echo-server"))
            .args(["--store", &unreachable, "--data-dir"])
            .arg(dir.path().join("other"))
            .args(["user", "list"])
            .output()
            .unwrap(),
    ];
    assert!(!help_and_errors[1].status.success());
    let stderr = String::from_utf8_lossy(&help_and_errors[1].stderr);
    assert!(
        stderr.contains("cannot connect to postgres://echo@127.0.0.1"),
        "{stderr}"
    );
    for output in &help_and_errors {
        for text in [&output.stdout, &output.stderr] {
            let text = String::from_utf8_lossy(text);
            assert!(!text.contains(secret), "the password shows: {text}");
        }
    }
    assert!(!logs.contains(secret), "the password is in the log");
}

#[test]
fn a_revocation_missed_while_the_channel_was_down_is_caught_when_it_is_back() {
    let Some(pg) = Postgres::start() else { return };
    let cluster = Cluster::start(&pg, 1, UNLIMITED);
    let (mut live, _) = Client::welcomed(cluster.addr(0), &register("fay"));
    // The chain ends while no notification can be sent (the trigger off)
    // and the server's listening connection is cut.
    pg.psql(
        "ALTER TABLE sessions DISABLE TRIGGER sessions_ended;
         DELETE FROM sessions;
         ALTER TABLE sessions ENABLE TRIGGER sessions_ended;",
    );
    assert_eq!(live.bye_within_a_second(), None, "nothing was announced");
    let cut = pg.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'",
    );
    assert_eq!(cut.trim(), "1", "the server listens on one connection");
    // Reconnected, the server re-checks its live sessions.
    assert_eq!(live.bye_within_a_second(), Some(ByeReason::Revoked));
}

#[test]
fn the_same_token_on_two_servers_at_once_gives_one_welcome_and_one_revocation() {
    let Some(pg) = Postgres::start() else { return };
    let cluster = Cluster::start(&pg, 2, UNLIMITED);
    let (_, mut token) = Client::welcomed(cluster.addr(0), &register("bob"));
    for round in 0..50 {
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = [cluster.addr(0), cluster.addr(1)]
            .into_iter()
            .map(|addr| {
                let (barrier, token) = (Arc::clone(&barrier), token.clone());
                std::thread::spawn(move || {
                    let mut client = Client::connect(addr);
                    barrier.wait();
                    let answer = client.ask(&resume(&token));
                    (client, answer)
                })
            })
            .collect();
        let mut outcomes: Vec<(Client, Answer)> =
            racers.into_iter().map(|r| r.join().unwrap()).collect();
        outcomes.sort_by_key(|(_, answer)| matches!(answer, Answer::Refused { .. }));
        let [(mut winner, first), (_, second)] = <[_; 2]>::try_from(outcomes).ok().unwrap();
        assert!(
            matches!(first, Answer::Welcome(_)),
            "round {round}: {first:?}, {second:?}"
        );
        assert!(
            matches!(
                second,
                Answer::Refused {
                    code: ErrorCode::TokenInvalid,
                    ..
                }
            ),
            "round {round}: {second:?}"
        );
        // The loser presented a rotated-away token: the chain is revoked,
        // and the winner's connection, on whichever server, ends.
        assert_eq!(
            winner.bye_within_a_second(),
            Some(ByeReason::Revoked),
            "round {round}"
        );
        token = match Client::connect(cluster.addr(round % 2)).ask(&login("bob", PASSWORD)) {
            Answer::Welcome(token) => token,
            other => panic!("round {round}: login after revocation: {other:?}"),
        };
    }
}

#[test]
fn password_attempts_are_counted_across_servers() {
    let Some(pg) = Postgres::start() else { return };
    let cluster = Cluster::start(&pg, 2, "auth_attempts_per_minute = 30\n");
    Client::welcomed(cluster.addr(0), &register("cy"));
    // Failures of one account on two servers make one run: the fifth
    // starts its back-off, wherever it happened.
    let failures =
        "SELECT consecutive, blocked_until > 0 FROM attempt_accounts WHERE account = 'cy'";
    for addr in [
        cluster.addr(0),
        cluster.addr(1),
        cluster.addr(0),
        cluster.addr(1),
    ] {
        let answer = Client::connect(addr).ask(&login("cy", "wrong password 1"));
        assert!(
            matches!(
                answer,
                Answer::Refused {
                    code: ErrorCode::InvalidCredentials,
                    ..
                }
            ),
            "{answer:?}"
        );
    }
    assert_eq!(
        pg.psql(failures).trim(),
        "4|f",
        "four failures, on both servers"
    );
    let answer = Client::connect(cluster.addr(1)).ask(&login("cy", "wrong password 2"));
    assert!(matches!(
        answer,
        Answer::Refused {
            code: ErrorCode::InvalidCredentials,
            ..
        }
    ));
    assert_eq!(
        pg.psql(failures).trim(),
        "5|t",
        "the fifth failure starts the back-off"
    );
    // Attempts per address: 4 a minute on these two servers, counted in
    // the same bucket as the attempts above.
    let limited = Cluster::start(&pg, 2, "auth_attempts_per_minute = 4\n");
    for addr in [
        limited.addr(0),
        limited.addr(1),
        limited.addr(0),
        limited.addr(1),
    ] {
        let answer = Client::connect(addr).ask(&login("nobody", "wrong password 3"));
        assert!(
            matches!(
                answer,
                Answer::Refused {
                    code: ErrorCode::InvalidCredentials,
                    ..
                }
            ),
            "{answer:?}"
        );
    }
    let answer = Client::connect(limited.addr(0)).ask(&login("nobody", "wrong password 3"));
    assert!(
        matches!(
            answer,
            Answer::Refused {
                code: ErrorCode::RateLimited,
                ..
            }
        ),
        "the fifth attempt in a minute, after four on two servers: {answer:?}"
    );
}

#[test]
fn admin_commands_work_on_the_database_while_servers_run() {
    let Some(pg) = Postgres::start() else { return };
    let cluster = Cluster::start(&pg, 2, UNLIMITED);
    let added = cluster.admin(&["user", "add", "dee"], &format!("{PASSWORD}\n"));
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let (_, token) = Client::welcomed(cluster.addr(0), &login("dee", PASSWORD));
    let (mut live, _) = Client::welcomed(cluster.addr(1), &resume(&token));
    let revoked = cluster.admin(&["session", "revoke", "dee"], "");
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert_eq!(live.bye_within_a_second(), Some(ByeReason::Revoked));
    let status = cluster.admin(&["db", "status"], "");
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains("up to date") && shown.contains("initial"),
        "{shown}"
    );
}

#[test]
fn kill_9_during_registrations_loses_no_acknowledged_user() {
    let Some(pg) = Postgres::start() else { return };
    let cluster = Cluster::start(&pg, 2, UNLIMITED);
    let addrs = [cluster.addr(0), cluster.addr(1)];
    let registrars: Vec<_> = (0..4)
        .map(|worker| {
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let until = Instant::now() + Duration::from_secs(3);
                for i in 0..200 {
                    if Instant::now() > until {
                        break;
                    }
                    let name = format!("w{worker}n{i}");
                    let Ok(stream) = TcpStream::connect(addrs[worker % 2]) else {
                        continue;
                    };
                    let mut stream = stream;
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let welcomed = (|| {
                        stream.recv_msg::<ServerMsg>().ok()??;
                        stream.recv_msg::<ServerMsg>().ok()??;
                        stream.send_msg(&register(&name)).ok()?;
                        match stream.recv_msg::<ServerMsg>().ok()?? {
                            ServerMsg::Welcome { .. } => Some(()),
                            _ => None,
                        }
                    })();
                    if welcomed.is_some() {
                        acknowledged.push(name);
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1200));
    cluster.servers[0]
        .1
        .signal(nix::sys::signal::Signal::SIGKILL);
    let acknowledged: Vec<String> = registrars
        .into_iter()
        .flat_map(|r| r.join().unwrap())
        .collect();
    assert!(
        acknowledged.len() > 4,
        "too few registrations to mean anything: {acknowledged:?}"
    );
    let listed = cluster.admin(&["user", "list"], "");
    let listed = String::from_utf8_lossy(&listed.stdout);
    eprintln!(
        "kill -9 during registrations: {} acknowledged, all checked",
        acknowledged.len()
    );
    for name in &acknowledged {
        assert!(
            listed.contains(name.as_str()),
            "{name} was welcomed but is not stored"
        );
    }
}

#[test]
fn a_database_outage_is_unavailable_then_served_again_without_a_restart() {
    let Some(pg) = Postgres::start() else { return };
    let cluster = Cluster::start(&pg, 2, UNLIMITED);
    let (mut established, token) = Client::welcomed(cluster.addr(0), &register("eve"));
    pg.stop();
    // Echo needs no database.
    assert_eq!(established.echo("still here"), "still here");
    let answer = Client::connect(cluster.addr(1)).ask(&resume(&token));
    assert!(
        matches!(
            answer,
            Answer::Refused {
                code: ErrorCode::Unavailable,
                fatal: true
            }
        ),
        "{answer:?}"
    );
    pg.start_again();
    let back = Instant::now();
    for addr in [cluster.addr(0), cluster.addr(1)] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Client::connect(addr).ask(&login("eve", PASSWORD)) {
                Answer::Welcome(_) => break,
                Answer::Refused {
                    code: ErrorCode::Unavailable,
                    ..
                } if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => panic!("not served again after the database came back: {other:?}"),
            }
        }
    }
    eprintln!(
        "database back: both servers served again within {:?}",
        back.elapsed()
    );
    // A restart under load: every answer is a welcome or `unavailable`,
    // and service goes on after it.
    let started = Instant::now();
    let load: Vec<_> = (0..3)
        .map(|i| {
            let addr = cluster.addr(i % 2);
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while started.elapsed() < Duration::from_secs(4) && answers.len() < 2000 {
                    let answer = Client::connect(addr).ask(&login("eve", PASSWORD));
                    answers.push((started.elapsed(), answer));
                }
                answers
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let restart = started.elapsed();
    pg.restart();
    let restarted = started.elapsed();
    let answers: Vec<_> = load.into_iter().flat_map(|l| l.join().unwrap()).collect();
    let mut gap = (Duration::MAX, Duration::ZERO);
    for (at, answer) in &answers {
        match answer {
            Answer::Welcome(_) => {}
            Answer::Refused {
                code: ErrorCode::Unavailable,
                ..
            } => gap = (gap.0.min(*at), gap.1.max(*at)),
            other => panic!("during a restart: {other:?}"),
        }
    }
    let served_after = answers
        .iter()
        .filter(|(at, answer)| *at > gap.1 && matches!(answer, Answer::Welcome(_)))
        .count();
    eprintln!(
        "pg_ctl restart under load: {} logins answered; restart from {restart:?} to {restarted:?}; unavailable from {:?} to {:?}; {served_after} welcomes after",
        answers.len(),
        gap.0,
        gap.1
    );
    assert!(served_after > 0, "nothing was served after the restart");
    let logs = common::read_logs(cluster.servers[1].0.path());
    let warnings = logs.matches("the database is unreachable").count();
    eprintln!("warnings logged by one server over two outages: {warnings}");
    assert!(
        warnings <= 4,
        "one warning per outage, not per request: {warnings}"
    );
}
