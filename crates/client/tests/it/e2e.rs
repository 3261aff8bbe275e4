//! echo-client end to end against a real server on loopback: pipe mode for
//! scripts (the REPL on a pseudo-terminal is `terminal`).
#![allow(clippy::unwrap_used)]

use std::{
    os::unix::fs::PermissionsExt,
    process::{Command, Stdio},
};

use crate::pipe::{CLIENT, pipe, stderr, stdout, token_file};
use echo_testkit::{PASSWORD, TestServer, auth_config, test_config};

#[test]
fn pipe_mode_registers_logs_in_and_echoes() {
    let server = TestServer::start_blocking(auth_config());
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(&dir);
    let creds = [("ECHO_USER", "ann"), ("ECHO_PASSWORD", PASSWORD)];
    let out = pipe(&server, &tokens, &["--register"], &creds, "hello\nпривет\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\nпривет\n");
    std::fs::remove_file(&tokens).unwrap();
    let out = pipe(&server, &tokens, &[], &creds, "logged in\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "logged in\n");
}

#[test]
fn repeat_four_prints_four_lines_and_waits_for_the_last() {
    let server = TestServer::start_blocking(auth_config());
    let dir = tempfile::tempdir().unwrap();
    let creds = [("ECHO_USER", "bob"), ("ECHO_PASSWORD", PASSWORD)];
    let out = pipe(
        &server,
        &token_file(&dir),
        &["--register"],
        &creds,
        "/repeat 4 hi\nafter\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi\nhi\nhi\nhi\nafter\n");
}

#[test]
fn the_token_file_is_private_and_lets_the_next_run_in_without_a_password() {
    let server = TestServer::start_blocking(auth_config());
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(&dir);
    let creds = [("ECHO_USER", "cleo"), ("ECHO_PASSWORD", PASSWORD)];
    let out = pipe(&server, &tokens, &["--register"], &creds, "one\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = std::fs::metadata(&tokens).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let first = std::fs::read_to_string(&tokens).unwrap();

    // No password at all: the saved token does it, and is replaced.
    let out = pipe(&server, &tokens, &[], &[("ECHO_USER", "cleo")], "two\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "two\n");
    assert_ne!(
        std::fs::read_to_string(&tokens).unwrap(),
        first,
        "tokens rotate"
    );
    let out = pipe(&server, &tokens, &[], &[], "three\n");
    assert!(out.status.success(), "{}", stderr(&out));

    // Deleting the token file means the password is needed again.
    std::fs::remove_file(&tokens).unwrap();
    let out = pipe(&server, &tokens, &[], &[("ECHO_USER", "cleo")], "four\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("missing credential: set ECHO_PASSWORD"),
        "{}",
        stderr(&out)
    );
    let out = pipe(&server, &tokens, &[], &creds, "five\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "five\n");
}

#[test]
fn a_wrong_password_exits_non_zero_with_a_clear_message() {
    let server = TestServer::start_blocking(auth_config());
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(&dir);
    let creds = [("ECHO_USER", "dan"), ("ECHO_PASSWORD", PASSWORD)];
    assert!(
        pipe(&server, &tokens, &["--register"], &creds, "")
            .status
            .success()
    );
    std::fs::remove_file(&tokens).unwrap();
    let wrong = [("ECHO_USER", "dan"), ("ECHO_PASSWORD", "not the password")];
    let out = pipe(&server, &tokens, &[], &wrong, "x\n");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stderr(&out), "echo-client: wrong user name or password\n");
    assert_eq!(stdout(&out), "");
    let out = pipe(&server, &tokens, &["--register"], &creds, "x\n");
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("is taken"), "{}", stderr(&out));
}

#[test]
fn a_stale_token_falls_back_to_the_password() {
    let server = TestServer::start_blocking(auth_config());
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(&dir);
    let creds = [("ECHO_USER", "eve"), ("ECHO_PASSWORD", PASSWORD)];
    assert!(
        pipe(&server, &tokens, &["--register"], &creds, "")
            .status
            .success()
    );
    let saved = std::fs::read_to_string(&tokens).unwrap();
    assert!(
        pipe(&server, &tokens, &[], &[], "rotate\n")
            .status
            .success()
    );
    // Put back the rotated-away token: the server revokes the chain and the
    // client deletes it, then logs in with the password.
    std::fs::write(&tokens, &saved).unwrap();
    let out = pipe(&server, &tokens, &[], &creds, "fallback\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "fallback\n");
}

#[test]
fn identification_mode_uses_the_user_name() {
    let server = TestServer::start_blocking(test_config());
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(&dir);
    let out = pipe(&server, &tokens, &["--user", "Fay"], &[], "/whoami\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("you are Fay, connected from 127.0.0.1:"),
        "{}",
        stdout(&out)
    );
    let out = pipe(&server, &tokens, &[], &[], "x\n");
    assert!(
        out.status.success(),
        "a known address needs no name: {}",
        stderr(&out)
    );
}

#[test]
fn errors_for_one_line_do_not_stop_the_rest() {
    let server = TestServer::start_blocking(test_config());
    let dir = tempfile::tempdir().unwrap();
    let out = pipe(
        &server,
        &token_file(&dir),
        &["--user", "Gus"],
        &[],
        "a\n/nope\nb\n",
    );
    // Every line is sent; the exit code says one was refused.
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out), "a\nb\n");
    assert!(
        stderr(&out).contains("error: unknown command /nope"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn no_server_is_one_sentence_and_exit_code_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(CLIENT)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "echo-client: cannot connect to 127.0.0.1:{port}: connection refused (is the server running?)\n"
        )
    );
}
