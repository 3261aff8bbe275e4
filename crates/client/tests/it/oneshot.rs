//! One-shot use (`echo-client --port P /repeat 3 hi`) and long lines in
//! pipe mode.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};

use crate::pipe::{CLIENT, pipe, stderr, stdout, token_file};
use echo_testkit::{PASSWORD, TestServer, auth_config};

#[test]
fn words_after_the_options_are_one_message_and_every_reply_is_printed() {
    let server = TestServer::start_blocking(auth_config());
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(&dir);
    let out = Command::new(CLIENT)
        .args(["--port", &server.addr.port().to_string(), "--register"])
        .arg("--token-file")
        .arg(&tokens)
        .args(["/repeat", "3", "hi", "there"])
        .env("ECHO_USER", "ann")
        .env("ECHO_PASSWORD", PASSWORD)
        .env_remove("ECHO_CLIENT_HOST")
        .env_remove("ECHO_CLIENT_PORT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi there\nhi there\nhi there\n");
    // The saved session does the next one; no password.
    let again = Command::new(CLIENT)
        .args(["--port", &server.addr.port().to_string()])
        .arg("--token-file")
        .arg(&tokens)
        .args(["ping"])
        .env_remove("ECHO_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), "ping\n");
}

#[test]
fn a_line_too_long_for_one_message_is_skipped_and_the_rest_are_sent() {
    let server = TestServer::start_blocking(auth_config());
    let dir = tempfile::tempdir().unwrap();
    let creds = [("ECHO_USER", "bob"), ("ECHO_PASSWORD", PASSWORD)];
    let input = format!("before\n{}\nafter\n", "x".repeat(70_000));
    let out = pipe(&server, &token_file(&dir), &["--register"], &creds, &input);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "before\nafter\n");
    assert!(
        stderr(&out).contains("skipped a line of 70000 bytes"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_one_shot_the_server_refuses_exits_7() {
    let server = TestServer::start_blocking(auth_config());
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(CLIENT)
        .args(["--port", &server.addr.port().to_string(), "--register"])
        .arg("--token-file")
        .arg(token_file(&dir))
        .arg("/nope")
        .env("ECHO_USER", "cy")
        .env("ECHO_PASSWORD", PASSWORD)
        .env_remove("ECHO_CLIENT_HOST")
        .env_remove("ECHO_CLIENT_PORT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let errors = stderr(&out);
    assert!(errors.contains("echo-client: error: "), "{errors}");
    assert!(
        errors.ends_with("echo-client: the server refused 1 of the lines sent\n"),
        "{errors}"
    );
}

#[test]
fn a_pipe_sends_every_line_and_exits_7_when_any_was_refused() {
    let server = TestServer::start_blocking(auth_config());
    let dir = tempfile::tempdir().unwrap();
    let creds = [("ECHO_USER", "dot"), ("ECHO_PASSWORD", PASSWORD)];
    let input = "before\n/nope\n/nope either\nafter\n";
    let out = pipe(&server, &token_file(&dir), &["--register"], &creds, input);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out), "before\nafter\n");
    assert!(
        stderr(&out).ends_with("the server refused 2 of the lines sent\n"),
        "{}",
        stderr(&out)
    );
    // Lines that all pass still exit 0.
    let out = pipe(&server, &token_file(&dir), &[], &[], "fine\n");
    assert!(out.status.success(), "{}", stderr(&out));
}
