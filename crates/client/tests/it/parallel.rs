//! Several pipe-mode clients started at once on one machine, sharing one
//! saved session: they take turns with the token file, and all get in.
#![allow(clippy::unwrap_used)]

use crate::pipe::{pipe, stderr, stdout, token_file};
use echo_testkit::{PASSWORD, TestServer, auth_config};

#[test]
fn eight_clients_started_together_with_one_saved_token_all_get_in() {
    let server = TestServer::start_blocking(auth_config());
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(&dir);
    let creds = [("ECHO_USER", "ann"), ("ECHO_PASSWORD", PASSWORD)];
    let out = pipe(&server, &tokens, &["--register"], &creds, "first\n");
    assert!(out.status.success(), "{}", stderr(&out));

    // No password: only the saved token can let them in.
    let outputs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (server, tokens) = (&server, &tokens);
                scope.spawn(move || pipe(server, tokens, &[], &[], &format!("line {i}\n")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, out) in outputs.iter().enumerate() {
        assert!(out.status.success(), "client {i}: {}", stderr(out));
        assert_eq!(stdout(out), format!("line {i}\n"));
    }
    // The session survived them all: a ninth run still needs no password.
    let out = pipe(&server, &tokens, &[], &[], "ninth\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ninth\n");
}

#[test]
fn a_revoked_session_is_named_before_the_password_is_missed() {
    let server = TestServer::start_blocking(auth_config());
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(&dir);
    let creds = [("ECHO_USER", "bob"), ("ECHO_PASSWORD", PASSWORD)];
    assert!(
        pipe(&server, &tokens, &["--register"], &creds, "hi\n")
            .status
            .success()
    );
    // A copy of the jar used elsewhere first: the server revokes the chain
    // when this machine presents the old token.
    let copy = dir.path().join("copy.json");
    std::fs::copy(&tokens, &copy).unwrap();
    assert!(pipe(&server, &copy, &[], &[], "thief\n").status.success());
    let out = pipe(&server, &tokens, &[], &[("ECHO_USER", "bob")], "me\n");
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    let port = server.addr.port();
    assert!(
        said.contains(&format!(
            "the saved session for 127.0.0.1:{port} was revoked or has expired"
        )),
        "{said}"
    );
    assert!(said.contains("missing credential"), "{said}");
}
