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
