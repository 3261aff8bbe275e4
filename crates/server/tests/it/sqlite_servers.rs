//! Lab task 4 the natural way: two `echo-server` processes started from one
//! directory on the SQLite store. The second moves to the next port and
//! serves the same users; a session ended on one ends on the other; the
//! admin commands work beside both.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use echo_proto::{ByeReason, ClientMsg, ErrorCode, ext::BlockingFrameWrite};
use echo_testkit::{PASSWORD, ServerProcess, cluster::Client, login, register, resume};

/// Two servers in `dir`, the second started on the first's port.
fn two_servers(dir: &std::path::Path) -> (ServerProcess, ServerProcess) {
    let port = echo_testkit::free_port().to_string();
    let args = [
        "--port",
        port.as_str(),
        "--mode",
        "auth",
        "--store",
        "sqlite",
    ];
    let first = ServerProcess::start(dir, &args, &[]);
    let second = ServerProcess::start(dir, &args, &[]);
    assert!(
        first.first_line.starts_with("listening on"),
        "{}",
        first.first_line
    );
    assert!(
        second
            .first_line
            .contains(&format!("(port {port} was busy)")),
        "the second server moves on: {}",
        second.first_line
    );
    (first, second)
}

#[test]
fn a_second_server_in_the_same_directory_moves_to_the_next_port_and_serves_the_same_users() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = two_servers(dir.path());
    let (_, token) = Client::welcomed(first.addr(), &register("ann", PASSWORD));
    // The user made on the first logs in on the second, and the session
    // made on the first resumes there.
    let (mut on_second, _) = Client::welcomed(second.addr(), &login("ann", PASSWORD));
    assert_eq!(on_second.echo("hello"), "hello");
    let (mut resumed, _) = Client::welcomed(second.addr(), &resume(&token));
    assert_eq!(resumed.echo("again"), "again");
}

#[test]
fn a_session_ended_on_one_server_ends_on_the_other_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = two_servers(dir.path());
    let (mut on_first, token) = Client::welcomed(first.addr(), &register("bob", PASSWORD));
    let (mut on_second, _) = Client::welcomed(second.addr(), &resume(&token));
    on_first.0.send_msg(&ClientMsg::Logout {}).unwrap();
    assert_eq!(on_second.bye_within_a_second(), Some(ByeReason::Revoked));
    // An operator's revocation, from a third process on the file.
    let (mut live, _) = Client::welcomed(second.addr(), &login("bob", PASSWORD));
    let revoked = Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .args(["--store", "sqlite", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["session", "revoke", "bob"])
        .output()
        .unwrap();
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert_eq!(live.bye_within_a_second(), Some(ByeReason::Revoked));
    // A rotated-away token presented on the other server is reuse.
    let (_, first_token) = Client::welcomed(first.addr(), &login("bob", PASSWORD));
    let (_, _rotated) = Client::welcomed(first.addr(), &resume(&first_token));
    let mut replay = Client::connect(second.addr());
    replay
        .ask(&resume(&first_token))
        .assert_refused(ErrorCode::TokenInvalid);
}
