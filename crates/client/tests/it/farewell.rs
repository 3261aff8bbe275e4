//! What the client says when the server ends the session: one plain
//! sentence per cause of a revocation, and a live connection told so.
#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use echo_client::{ClientError, TokenJar};
use echo_proto::{ByeCause, ByeReason, ClientMsg, ext::BlockingFrameWrite};
use echo_testkit::{PASSWORD, TestServer, auth_config, cluster::Client, resume};

use crate::pipe::{CLIENT, pipe, stderr, token_file};

#[test]
fn each_cause_of_a_revocation_is_one_plain_sentence() {
    let said = |cause| ClientError::Bye(ByeReason::Revoked, cause).to_string();
    let expected = [
        (
            Some(ByeCause::Logout),
            "you were logged out (the session ended elsewhere)",
        ),
        (
            Some(ByeCause::Reuse),
            "your session was revoked: its token was used by someone else",
        ),
        (Some(ByeCause::Operator), "an operator ended your session"),
        (
            Some(ByeCause::PasswordChanged),
            "your password was changed; log in again",
        ),
        (
            Some(ByeCause::Expired),
            "your session expired; log in again",
        ),
        (
            Some(ByeCause::Other),
            "your session was revoked; log in again",
        ),
        (None, "your session was revoked; log in again"),
    ];
    for (cause, sentence) in expected {
        assert_eq!(said(cause), sentence);
    }
    // Other reasons keep their form: one pair of parentheses at most.
    let kicked = ClientError::Bye(ByeReason::Kicked, None).to_string();
    assert_eq!(
        kicked,
        "the server closed the connection (an operator ended this connection)"
    );
    for reason in [ByeReason::Revoked, ByeReason::Shutdown, ByeReason::Kicked] {
        for cause in [None, Some(ByeCause::Logout), Some(ByeCause::Reuse)] {
            let text = ClientError::Bye(reason, cause).to_string();
            let mut depth = 0;
            for c in text.chars() {
                depth += i32::from(c == '(') - i32::from(c == ')');
                assert!(depth <= 1, "nested parentheses: {text}");
            }
        }
    }
}

#[test]
fn a_logout_elsewhere_ends_a_running_pipe_with_its_sentence() {
    let server = TestServer::start_blocking(auth_config());
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(&dir);
    let creds = [("ECHO_USER", "ann"), ("ECHO_PASSWORD", PASSWORD)];
    let registered = pipe(&server, &tokens, &["--register"], &creds, "first\n");
    assert!(registered.status.success(), "{}", stderr(&registered));
    // A pipe that stays connected on the saved session (its input open).
    let mut child = Command::new(CLIENT)
        .args(["--port", &server.addr.port().to_string()])
        .arg("--token-file")
        .arg(&tokens)
        .env_remove("ECHO_PASSWORD")
        .env_remove("ECHO_CLIENT_HOST")
        .env_remove("ECHO_CLIENT_PORT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(b"hi\n").unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    output.read_line(&mut line).unwrap();
    assert_eq!(line, "hi\n");
    // Another connection of the same session logs out.
    let server_name = format!("127.0.0.1:{}", server.addr.port());
    let token = TokenJar::new(&tokens).get(&server_name).unwrap().unwrap();
    let (mut other, _) = Client::welcomed(server.addr, &resume(&token));
    other.0.send_msg(&ClientMsg::Logout {}).unwrap();
    // Its input still open, the client exits on the `bye` alone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the client did not exit after bye");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(input);
    let mut errors = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut errors)
        .unwrap();
    assert_eq!(status.code(), Some(4), "{errors}");
    assert_eq!(
        errors,
        "echo-client: you were logged out (the session ended elsewhere)\n"
    );
}
