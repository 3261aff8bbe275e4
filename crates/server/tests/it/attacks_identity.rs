//! Attacks on identity and on what the server writes (docs/RELIABILITY.md,
//! "Hardening II"): forged log lines, file modes, planted links, stolen
//! and revoked token chains, look-alike names.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use echo_proto::{ByeCause, ByeReason, ClientMsg, ErrorCode, Secret, ServerMsg};
use echo_server::store::{SqliteStore, UserStore, sqlite::DB_FILE};
use echo_testkit::{ServerProcess, TestClient, TestServer, auth_config, read_logs};
use tokio::net::TcpStream;

use echo_testkit::PASSWORD;

#[tokio::test]
async fn client_strings_cannot_forge_or_disguise_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &["--port", "0"], &[]);
    let forged = "mallory\n2026-11-21T00:00:00.000000Z  INFO forged: admin logged in";
    let disguised = "\u{1b}[2Kvic\u{202e}mit\u{200b}";
    for user in [forged, disguised] {
        let stream = TcpStream::connect(server.addr()).await.unwrap();
        let mut client = TestClient::after_hello(stream).await;
        assert!(matches!(client.recv().await, ServerMsg::AskAuth { .. }));
        for msg in [
            ClientMsg::Login {
                user: user.into(),
                password: Secret::new("wrong horse battery"),
            },
            ClientMsg::Register {
                user: user.into(),
                password: Secret::new(PASSWORD),
            },
        ] {
            client.send(&msg).await;
            assert!(matches!(client.recv().await, ServerMsg::Error { .. }));
        }
    }
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let log = read_logs(dir.path());
    assert!(
        log.lines()
            .all(|line| !line.starts_with("2026-11-21T00:00:00")),
        "a client forged a log line:\n{log}"
    );
    assert!(!log.contains('\u{1b}') && !log.contains('\u{202e}') && !log.contains('\u{200b}'));
    // The failed names are still there for operators and fail2ban, escaped.
    assert!(
        log.contains("login failed user=mallory\\u{a}2026-11-21T00:00:00.000000Z  INFO forged"),
        "{log}"
    );
    assert!(log.contains("\\u{1b}[2Kvic\\u{202e}mit\\u{200b}"), "{log}");
    assert!(log.contains("registration refused"), "{log}");
}

fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn store_and_log_files_are_not_readable_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("echo.pid");
    let pid_arg = pid_file.to_str().unwrap();
    let server = ServerProcess::start(dir.path(), &["--port", "0", "--pid-file", pid_arg], &[]);
    let stream = TcpStream::connect(server.addr()).await.unwrap();
    let mut client = TestClient::after_hello(stream).await;
    assert!(matches!(client.recv().await, ServerMsg::AskAuth { .. }));
    client
        .send(&ClientMsg::Register {
            user: "ann".into(),
            password: Secret::new(PASSWORD),
        })
        .await;
    assert!(matches!(client.recv().await, ServerMsg::Welcome { .. }));
    let data = dir.path().join("data");
    assert_eq!(mode_of(&data), 0o700, "data/");
    for file in ["echo.db", "echo.db-wal", "echo.db-shm"] {
        assert_eq!(mode_of(&data.join(file)), 0o600, "{file}");
    }
    let logs: Vec<_> = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert!(!logs.is_empty());
    for log in logs {
        // log_serv.txt is a link to the current file: its target counts.
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&log).unwrap().permissions(),
        ) & 0o777;
        assert_eq!(mode, 0o640, "{}", log.display());
    }
    assert_eq!(
        mode_of(&pid_file) & 0o007,
        0,
        "the pid file is not for others"
    );
}

#[tokio::test]
async fn a_planted_link_is_never_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let lifetimes = Default::default();
    // A link in the database's place stops the store from opening ...
    let database = data.join(DB_FILE);
    std::os::unix::fs::symlink(&victim, &database).unwrap();
    let err = SqliteStore::open(&database, lifetimes).await.unwrap_err();
    assert!(err.to_string().contains("echo.db"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    // ... and so does one in the place of its write-ahead log.
    std::fs::remove_file(&database).unwrap();
    let wal = data.join("echo.db-wal");
    std::os::unix::fs::symlink(&victim, &wal).unwrap();
    if let Ok(store) = SqliteStore::open(&database, lifetimes).await {
        let ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let written = store.remember_identity(ip, "Ann", 1).await;
        assert!(written.is_err(), "a change went through the planted link");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

#[tokio::test]
async fn a_thief_on_a_revoked_chain_is_disconnected() {
    let server = TestServer::start(auth_config()).await;
    let register = ClientMsg::Register {
        user: "victim".into(),
        password: Secret::new(PASSWORD),
    };
    let (_victim, stolen) = server.welcomed(register).await;
    // The thief resumes the stolen token first and stays connected.
    let (mut thief, _) = server
        .welcomed(ClientMsg::Resume {
            token: stolen.clone(),
        })
        .await;
    assert!(thief.ask(1, "/whoami").await[0].starts_with("you are victim"));
    // The victim presents the token it holds: reuse, the chain is revoked.
    let mut victim = server.connect_raw().await;
    assert!(matches!(victim.recv().await, ServerMsg::AskAuth { .. }));
    victim.send(&ClientMsg::Resume { token: stolen }).await;
    assert!(matches!(
        victim.recv().await,
        ServerMsg::Error {
            code: ErrorCode::TokenInvalid,
            ..
        }
    ));
    assert_eq!(
        thief.bye_and_cause_within_a_second().await,
        Some((ByeReason::Revoked, Some(ByeCause::Reuse)))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_logout_ends_the_chains_other_connections() {
    let server = TestServer::start(auth_config()).await;
    let register = ClientMsg::Register {
        user: "ann".into(),
        password: Secret::new(PASSWORD),
    };
    let (mut first, token) = server.welcomed(register).await;
    let (mut second, _) = server.welcomed(ClientMsg::Resume { token }).await;
    let login = ClientMsg::Login {
        user: "ann".into(),
        password: Secret::new(PASSWORD),
    };
    let (mut other_session, _) = server.welcomed(login).await;
    second.send(&ClientMsg::Logout {}).await;
    assert_eq!(second.bye_within_a_second().await, Some(ByeReason::Logout));
    assert_eq!(
        first.bye_and_cause_within_a_second().await,
        Some((ByeReason::Revoked, Some(ByeCause::Logout)))
    );
    // Another session of the same user goes on.
    assert_eq!(other_session.ask(1, "still here").await, ["still here"]);
    server.stop().await;
}

#[tokio::test]
async fn names_that_look_alike_are_one_user_or_refused() {
    let server = TestServer::start(auth_config()).await;
    let register = |user: &str| ClientMsg::Register {
        user: user.into(),
        password: Secret::new(PASSWORD),
    };
    server.welcomed(register("victim")).await;
    let variants = [
        ("Victim", ErrorCode::NameTaken),
        ("VICTIM", ErrorCode::NameTaken),
        ("victim\u{200b}", ErrorCode::InvalidName),
        ("\u{200b}victim", ErrorCode::InvalidName),
        ("victim\u{2060}", ErrorCode::InvalidName),
        ("\u{feff}victim", ErrorCode::InvalidName),
        ("vic\u{ad}tim", ErrorCode::InvalidName),
        ("v\u{456}ctim", ErrorCode::NameTaken),
        ("ｖｉｃｔｉｍ", ErrorCode::NameTaken),
        ("victi\u{301}m", ErrorCode::NameTaken),
        ("victim\u{202e}", ErrorCode::InvalidName),
    ];
    for chunk in variants.chunks(4) {
        // Each refusal costs an attempt: a fresh connection per four.
        let mut client = server.connect_raw().await;
        assert!(matches!(client.recv().await, ServerMsg::AskAuth { .. }));
        for (name, expected) in chunk {
            client.send(&register(name)).await;
            match client.recv().await {
                ServerMsg::Error { code, .. } => assert_eq!(code, *expected, "{name:?}"),
                other => panic!("{name:?} was not refused: {other:?}"),
            }
        }
    }
    // Any spelling of the name logs in, as the user registered.
    let login = ClientMsg::Login {
        user: "ＶＩＣＴＩＭ".into(),
        password: Secret::new(PASSWORD),
    };
    let (mut client, _) = server.welcomed(login).await;
    assert!(client.ask(1, "/whoami").await[0].starts_with("you are victim,"));
    server.stop().await;
}
