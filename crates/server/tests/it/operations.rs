//! Operating the real binary: admin commands on the store, and `kill -9`
//! in the middle of a stream of registrations.
#![allow(clippy::unwrap_used)]

use std::{
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use echo_proto::{
    ClientMsg, ErrorCode, Secret, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};
use echo_testkit::ServerProcess;
use echo_testkit::login;

use echo_testkit::PASSWORD;

/// Runs `echo-server --data-dir DIR/data ARGS`, feeding `stdin`.
fn admin(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_echo-server"));
    command.arg("--data-dir").arg(dir.join("data")).args(args);
    echo_testkit::run_with_stdin(command, stdin)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Connects, answers `ask_auth` with `msg`, returns the answer.
fn authenticate(addr: SocketAddr, msg: &ClientMsg) -> std::io::Result<ServerMsg> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut next = || -> std::io::Result<ServerMsg> {
        stream
            .recv_msg::<ServerMsg>()
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .ok_or_else(|| std::io::Error::other("closed"))
    };
    let hello = next()?;
    assert!(matches!(hello, ServerMsg::Hello { .. }));
    let ask = next()?;
    assert!(matches!(ask, ServerMsg::AskAuth { .. }));
    stream
        .send_msg(msg)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    stream
        .recv_msg::<ServerMsg>()
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .ok_or_else(|| std::io::Error::other("closed"))
}

#[test]
fn admin_commands_manage_users_and_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    let out = admin(dir, &["user", "add", "ann"], &format!("{PASSWORD}\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "user ann added\n");
    let out = admin(dir, &["user", "add", "ann"], &format!("{PASSWORD}\n"));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    let out = admin(dir, &["user", "add", "bob"], "password\n");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("too weak"),
        "{}",
        text(&out.stderr)
    );
    let out = admin(dir, &["user", "add", "bob"], "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no password"),
        "{}",
        text(&out.stderr)
    );
    let out = admin(dir, &["user", "list"], "");
    assert!(
        text(&out.stdout).starts_with("ann\tcreated "),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(text(&out.stdout).lines().count(), 1);

    // While a server owns the store, admin commands go through it, with
    // the same output.
    let server = ServerProcess::start(dir, &["--port", "0"], &[]);
    let running = admin(dir, &["user", "list"], "");
    assert!(running.status.success(), "{}", text(&running.stderr));
    assert_eq!(text(&running.stdout), text(&out.stdout));
    let token = match authenticate(server.addr(), &login("ann", PASSWORD)).unwrap() {
        ServerMsg::Welcome { token, .. } => token,
        other => panic!("expected welcome, got {other:?}"),
    };
    drop(server);

    let out = admin(dir, &["session", "list", "ann"], "");
    assert_eq!(
        text(&out.stdout).lines().count(),
        1,
        "{}",
        text(&out.stdout)
    );
    let out = admin(dir, &["session", "revoke", "ann"], "");
    assert_eq!(text(&out.stdout), "1 session(s) of ann revoked\n");
    let out = admin(dir, &["user", "passwd", "ann"], "another good passphrase\n");
    assert!(out.status.success(), "{}", text(&out.stderr));

    let server = ServerProcess::start(dir, &["--port", "0"], &[]);
    let resume = ClientMsg::Resume { token };
    assert!(matches!(
        authenticate(server.addr(), &resume).unwrap(),
        ServerMsg::Error {
            code: ErrorCode::TokenInvalid,
            ..
        }
    ));
    assert!(matches!(
        authenticate(server.addr(), &login("ann", PASSWORD)).unwrap(),
        ServerMsg::Error {
            code: ErrorCode::InvalidCredentials,
            ..
        }
    ));
    assert!(matches!(
        authenticate(server.addr(), &login("ann", "another good passphrase")).unwrap(),
        ServerMsg::Welcome { .. }
    ));
    drop(server);

    let out = admin(dir, &["user", "remove", "ann"], "");
    assert_eq!(text(&out.stdout), "user ann removed\n");
    let out = admin(dir, &["user", "list"], "");
    assert_eq!(text(&out.stdout), "no users\n");
    let out = admin(dir, &["user", "remove", "ann"], "");
    assert!(
        text(&out.stderr).contains("no user"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_corrupt_store_stops_the_server_with_a_message_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let journal = dir.path().join("data/store.journal");
    std::fs::write(&journal, "this is not a journal\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .args(["--port", "0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "it must not claim to listen");
    let stderr = text(&output.stderr);
    assert!(stderr.contains(journal.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("line 1"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap(),
        "this is not a journal\n"
    );
}

#[test]
fn kill_9_during_registrations_loses_no_acknowledged_user() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let config = dir.join("server.toml");
    std::fs::write(&config, "auth_attempts_per_minute = 1000000\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    let mut acknowledged: Vec<String> = Vec::new();
    // A few rounds in the normal suite; scripts/soak.sh asks for more.
    let rounds: u64 = std::env::var("ECHO_SOAK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for round in 0..rounds {
        let mut server = ServerProcess::start(dir, &["--port", "0", "--config", &config], &[]);
        let addr = server.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let welcomed = Arc::new(Mutex::new(Vec::new()));
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                let stop = Arc::clone(&stop);
                let welcomed = Arc::clone(&welcomed);
                std::thread::spawn(move || {
                    for i in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let user = format!("r{round}w{worker}n{i}");
                        let msg = ClientMsg::Register {
                            user: user.clone(),
                            password: Secret::new(PASSWORD),
                        };
                        match authenticate(addr, &msg) {
                            Ok(ServerMsg::Welcome { user: got, .. }) => {
                                assert_eq!(got, user);
                                welcomed.lock().unwrap().push(user);
                            }
                            Ok(other) => panic!("unexpected {other:?}"),
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        // Kill while the workers are registering: once some (a number that
        // varies with the round) have been acknowledged, however loaded the
        // machine is.
        let some = 1 + (round % 4) as usize;
        let registered = echo_testkit::wait_until(Duration::from_secs(60), || {
            welcomed.lock().unwrap().len() >= some
        });
        assert!(registered, "round {round}: no registration finished");
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        stop.store(true, Ordering::SeqCst);
        for worker in workers {
            worker.join().unwrap();
        }
        let new = welcomed.lock().unwrap().clone();
        assert!(!new.is_empty(), "round {round}: no registration finished");
        eprintln!(
            "kill -9 round {round}: {} registrations acknowledged before the kill",
            new.len()
        );
        acknowledged.extend(new);

        let out = admin(dir, &["user", "list"], "");
        assert!(
            out.status.success(),
            "the store must load after kill -9: {}",
            text(&out.stderr)
        );
        let listed: std::collections::HashSet<String> = text(&out.stdout)
            .lines()
            .map(|line| line.split('\t').next().unwrap().to_owned())
            .collect();
        for user in &acknowledged {
            assert!(
                listed.contains(user),
                "round {round}: {user} got welcome but was lost"
            );
        }
    }
}

#[test]
fn a_whole_session_leaves_no_password_or_token_in_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &["--port", "0"], &[("RUST_LOG", "trace")]);
    let addr = server.addr();
    let register = ClientMsg::Register {
        user: "ann".into(),
        password: Secret::new(PASSWORD),
    };
    let ServerMsg::Welcome { token: first, .. } = authenticate(addr, &register).unwrap() else {
        panic!("expected welcome")
    };
    let resume = ClientMsg::Resume {
        token: first.clone(),
    };
    let ServerMsg::Welcome { token: second, .. } = authenticate(addr, &resume).unwrap() else {
        panic!("expected welcome")
    };
    assert!(matches!(
        authenticate(addr, &login("ann", "wrong horse battery")).unwrap(),
        ServerMsg::Error { .. }
    ));
    // Log in, then log out on the same connection.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.send_msg(&login("ann", PASSWORD)).unwrap();
    let mut third = None;
    loop {
        match stream.recv_msg::<ServerMsg>().unwrap() {
            Some(ServerMsg::Welcome { token, .. }) => {
                third = Some(token);
                stream.send_msg(&ClientMsg::Logout {}).unwrap();
            }
            Some(ServerMsg::Bye { .. }) | None => break,
            Some(_) => {}
        }
    }
    let third = third.unwrap();
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).success());

    let log = echo_testkit::read_logs(dir.path());
    for expected in [
        "registered",
        "session resumed; token rotated",
        "login failed",
        "logged in",
        "logged out: session revoked",
    ] {
        assert!(log.contains(expected), "the log lacks {expected:?}:\n{log}");
    }
    for secret in [
        PASSWORD,
        "wrong horse battery",
        first.expose(),
        second.expose(),
        third.expose(),
    ] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
}
