//! Several `echo-server` processes on one throwaway PostgreSQL: what one
//! server does, the others see (sessions, revocations, the admin
//! commands), and the database's password never shows.
#![allow(clippy::unwrap_used)]

use std::{
    process::Command,
    sync::{Arc, Barrier},
    time::Duration,
};

use echo_proto::{ByeCause, ByeReason, ClientMsg, ErrorCode, ext::BlockingFrameWrite};
use echo_testkit::{PASSWORD, login, register, resume};
use echo_testkit::{
    ServerProcess,
    cluster::{Answer, Client, Cluster, UNLIMITED},
    postgres::Postgres,
};

#[test]
fn a_session_made_on_one_server_is_resumed_on_another_and_logout_ends_it_everywhere() {
    let Some(pg) = Postgres::start() else { return };
    let cluster = Cluster::start(&pg, 2, UNLIMITED);
    let (mut on_a, token) = Client::welcomed(cluster.addr(0), &register("ann", PASSWORD));
    let (mut on_b, _) = Client::welcomed(cluster.addr(1), &resume(&token));
    assert_eq!(on_b.echo("hi from b"), "hi from b");
    // The chain now has a live connection on each server; a logout on A
    // ends B's.
    on_a.0.send_msg(&ClientMsg::Logout {}).unwrap();
    assert_eq!(
        on_b.bye_and_cause_within_a_second(),
        Some((ByeReason::Revoked, Some(ByeCause::Logout)))
    );
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
    // Stopped gracefully, so that the log is flushed.
    let mut server = server;
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let logs = echo_testkit::read_logs(dir.path());
    assert!(logs.contains("postgres://echo@127.0.0.1"), "{logs}");
    // An unreachable database: the error names it, not the password.
    let unreachable = format!(
        "postgres://echo:{secret}@127.0.0.1:{}/echo",
        echo_testkit::free_port()
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
    let (mut live, _) = Client::welcomed(cluster.addr(0), &register("fay", PASSWORD));
    // The chain ends while no notification can be sent (the trigger off)
    // and the server's listening connection is cut.
    pg.psql(
        "ALTER TABLE sessions DISABLE TRIGGER sessions_ended;
         DELETE FROM sessions;
         ALTER TABLE sessions ENABLE TRIGGER sessions_ended;",
    );
    assert_eq!(live.bye_within_a_second(), None, "nothing was announced");
    let cut = pg.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE application_name = 'echo-server revocations'",
    );
    assert_eq!(cut.trim(), "1", "the server listens on one connection");
    // Reconnected, the server re-checks its live sessions (which cannot
    // say why a chain is gone).
    assert_eq!(
        live.bye_and_cause_within_a_second(),
        Some((ByeReason::Revoked, None))
    );
}

#[test]
fn the_same_token_on_two_servers_at_once_gives_one_welcome_and_one_revocation() {
    let Some(pg) = Postgres::start() else { return };
    let cluster = Cluster::start(&pg, 2, UNLIMITED);
    let (_, mut token) = Client::welcomed(cluster.addr(0), &register("bob", PASSWORD));
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
            winner.bye_and_cause_within_a_second(),
            Some((ByeReason::Revoked, Some(ByeCause::Reuse))),
            "round {round}"
        );
        token = match Client::connect(cluster.addr(round % 2)).ask(&login("bob", PASSWORD)) {
            Answer::Welcome(token) => token,
            other => panic!("round {round}: login after revocation: {other:?}"),
        };
    }
}

/// The password `user passwd` sets.
const NEW: &str = "another good passphrase";

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
    assert_eq!(
        live.bye_and_cause_within_a_second(),
        Some((ByeReason::Revoked, Some(ByeCause::Operator)))
    );
    // A new password set on the database ends the sessions made since, on
    // whichever server, and says so.
    let (mut live, _) = Client::welcomed(cluster.addr(0), &login("dee", PASSWORD));
    let passwd = cluster.admin(&["user", "passwd", "dee"], &format!("{NEW}\n"));
    assert!(
        passwd.status.success(),
        "{}",
        String::from_utf8_lossy(&passwd.stderr)
    );
    assert_eq!(
        live.bye_and_cause_within_a_second(),
        Some((ByeReason::Revoked, Some(ByeCause::PasswordChanged)))
    );
    let status = cluster.admin(&["db", "status"], "");
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains("up to date") && shown.contains("initial"),
        "{shown}"
    );
}

/// `session revoke USER --id ID` on the database: the one session ends on
/// the server holding it, the user's other session goes on elsewhere.
#[test]
fn one_session_revoked_by_id_ends_only_its_connection() {
    let Some(pg) = Postgres::start() else { return };
    let cluster = Cluster::start(&pg, 2, UNLIMITED);
    let ids = |listed: &std::process::Output| -> Vec<String> {
        assert!(listed.status.success(), "{listed:?}");
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .map(|line| line.split('\t').next().unwrap().to_owned())
            .collect()
    };
    let (mut first, _) = Client::welcomed(cluster.addr(0), &register("eve", PASSWORD));
    let first_id = ids(&cluster.admin(&["session", "list", "eve"], "")).remove(0);
    let (mut second, _) = Client::welcomed(cluster.addr(1), &login("eve", PASSWORD));
    assert_eq!(
        ids(&cluster.admin(&["session", "list", "eve"], "")).len(),
        2
    );
    let revoked = cluster.admin(&["session", "revoke", "eve", "--id", &first_id], "");
    assert_eq!(
        String::from_utf8_lossy(&revoked.stdout),
        format!("session {first_id} of eve revoked\n"),
        "{revoked:?}"
    );
    assert_eq!(first.bye_within_a_second(), Some(ByeReason::Revoked));
    assert_eq!(second.echo("still here"), "still here");
    let left = ids(&cluster.admin(&["session", "list", "eve"], ""));
    assert_eq!(left.len(), 1);
    assert_ne!(left[0], first_id);
}
