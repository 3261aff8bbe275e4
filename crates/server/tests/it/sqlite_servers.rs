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
    // It moves on (past other tests' ports too, when they took the next).
    let moved = &second.first_line;
    assert!(
        moved.contains(&format!("(port {port} was busy)"))
            || moved.contains(&format!("(ports {port}-")),
        "the second server moves on: {moved}"
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

/// A copy of the previous release's journal at `dir/data/store.journal`.
fn old_journal_in(dir: &std::path::Path) -> std::path::PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/journal-0.1/store.journal");
    let journal = data.join("store.journal");
    std::fs::copy(fixture, &journal).unwrap();
    journal
}

#[test]
fn a_server_started_beside_an_old_journal_imports_it_and_its_users_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let journal = old_journal_in(dir.path());
    let server = ServerProcess::start(dir.path(), &["--port", "0", "--mode", "auth"], &[]);
    assert!(!journal.exists());
    assert!(journal.with_extension("journal.imported").exists());
    let (mut ann, _) = Client::welcomed(server.addr(), &login("ann", PASSWORD));
    assert_eq!(ann.echo("still here"), "still here");
    let (_, _) = Client::welcomed(server.addr(), &login("ZOË", PASSWORD));
    server.wait_for_log("imported the journal store into SQLite");
    let log = echo_testkit::read_logs(dir.path());
    for count in [
        "users=3",
        "sessions=3",
        "tokens=5",
        "identities=2",
        "familiar_sources=2",
    ] {
        assert!(log.contains(count), "{count} missing from:\n{log}");
    }
}

#[test]
fn store_import_journal_imports_by_hand_and_db_status_tells_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let journal = old_journal_in(dir.path());
    let elsewhere = dir.path().join("old.journal");
    std::fs::rename(&journal, &elsewhere).unwrap();
    let admin = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_echo-server"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args)
            .env_remove("ECHO_SERVER_STORE")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.success(), stdout, stderr)
    };
    let (_, before, _) = admin(&["db", "status"]);
    assert!(before.contains("no database yet"), "{before}");
    let (ok, said, err) = admin(&["store", "import-journal", elsewhere.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        said.contains("3 users, 3 sessions (5 tokens), 2 identities"),
        "{said}"
    );
    assert!(!elsewhere.exists());
    let (_, users, _) = admin(&["user", "list"]);
    assert!(users.contains("ann") && users.contains("Zoë"), "{users}");
    let (_, status, _) = admin(&["db", "status"]);
    assert!(status.contains("schema version 2; up to date"), "{status}");
    // A second import of the same names is refused as a whole.
    let again = old_journal_in(dir.path());
    let (ok, _, err) = admin(&["store", "import-journal", again.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    assert!(again.exists());
}
