//! The real `echo-client` across real `echo-server upgrade`s: a pipe that
//! keeps sending while the server is replaced twice gets every line
//! answered once, in order, and is never asked for a password; in
//! identification mode it is greeted by address again (no name asked); the
//! REPL says one line.

use std::{
    io::Write,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use echo_testkit::{KillOnDrop, PASSWORD, ServerProcess};
use rexpect::session::PtySession;

use crate::{
    pipe::{CLIENT, pipe_to, stderr, stdout, token_file},
    terminal::{enter, spawn},
};

const AUTH: &[&str] = &["--port", "0", "--host", "127.0.0.1", "--mode", "auth"];

/// Lines the pipe sends, one every [`PACE`]: about three seconds in all.
const LINES: usize = 300;
const PACE: Duration = Duration::from_millis(10);

/// `echo-server upgrade` on the data directory `server` uses; the new pid.
fn upgrade(server: &ServerProcess) -> KillOnDrop {
    let out = server.admin(&["upgrade"]);
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{printed}{}", stderr(&out));
    let rest = printed.strip_prefix("upgraded: pid ").unwrap();
    KillOnDrop(rest.split(' ').next().unwrap().parse().unwrap())
}

#[test]
fn a_pipe_keeps_going_across_two_upgrades_with_no_password_and_no_line_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), AUTH, &[]);
    let port = server.addr().port();
    let tokens = token_file(&dir);
    let creds = [("ECHO_USER", "ann"), ("ECHO_PASSWORD", PASSWORD)];
    let registered = pipe_to(port, &tokens, &["--register"], &creds, "first\n");
    assert!(registered.status.success(), "{}", stderr(&registered));

    // No user, no password: only the saved session can let it in.
    let mut client = Command::new(CLIENT)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--token-file")
        .arg(&tokens)
        .env_remove("ECHO_USER")
        .env_remove("ECHO_PASSWORD")
        .env_remove("ECHO_CLIENT_HOST")
        .env_remove("ECHO_CLIENT_PORT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = client.stdin.take().unwrap();
    let lines: Vec<String> = (0..LINES).map(|n| format!("line {n}")).collect();
    let sent = lines.clone();
    let writer = thread::spawn(move || {
        for line in sent {
            writeln!(input, "{line}").unwrap();
            thread::sleep(PACE);
        }
    });
    thread::sleep(Duration::from_millis(500));
    let second = upgrade(&server);
    assert!(server.wait_exit(Duration::from_secs(15)).success());
    thread::sleep(Duration::from_millis(500));
    // The second upgrade goes through the new process's control socket.
    let third = upgrade(&server);
    writer.join().unwrap();
    let output = client.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stderr(&output), "", "nothing asked, nothing reported");
    let expected: String = lines.iter().map(|line| format!("{line}\n")).collect();
    assert_eq!(stdout(&output), expected);
    assert!(third.is_running());
    drop(second);
}

/// Starts the real client in pipe mode on `port` with `tokens`, no user
/// and no password; its standard input is the caller's to write.
fn pipe_client(port: u16, tokens: &std::path::Path, args: &[&str]) -> std::process::Child {
    Command::new(CLIENT)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .arg("--token-file")
        .arg(tokens)
        .env_remove("ECHO_USER")
        .env_remove("ECHO_PASSWORD")
        .env_remove("ECHO_CLIENT_HOST")
        .env_remove("ECHO_CLIENT_PORT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn in_identification_mode_the_pipe_is_greeted_by_address_again_after_a_real_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let ident = ["--port", "0", "--host", "127.0.0.1", "--mode", "ident"];
    let mut server = ServerProcess::start(dir.path(), &ident, &[]);
    let port = server.addr().port();
    let tokens = token_file(&dir);
    // The address gets its name once.
    let named = pipe_to(port, &tokens, &["--user", "Ann"], &[], "first\n");
    assert!(named.status.success(), "{}", stderr(&named));
    // No --user from here on: a name asked for would fail the run.
    let mut client = pipe_client(port, &tokens, &[]);
    let mut input = client.stdin.take().unwrap();
    writeln!(input, "before").unwrap();
    thread::sleep(Duration::from_millis(300));
    let new = upgrade(&server);
    assert!(server.wait_exit(Duration::from_secs(15)).success());
    writeln!(input, "after").unwrap();
    drop(input);
    let output = client.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stderr(&output), "", "nothing asked, nothing reported");
    assert_eq!(stdout(&output), "before\nafter\n");
    // The new process greeted the address by its name: it lists Ann.
    let listed = server.admin(&["ident", "list"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("Ann"),
        "{listed:?}"
    );
    assert!(new.is_running());
}

/// A real server in `dir`, Ann registered on it by a pipe, and a REPL
/// that resumed her saved session and shows its prompt.
fn repl_of_ann(dir: &tempfile::TempDir) -> (ServerProcess, PtySession) {
    let server = ServerProcess::start(dir.path(), AUTH, &[]);
    let port = server.addr().port().to_string();
    let tokens = dir.path().join("tokens.json");
    let creds = [("ECHO_USER", "ann"), ("ECHO_PASSWORD", PASSWORD)];
    let registered = pipe_to(
        server.addr().port(),
        &tokens,
        &["--register"],
        &creds,
        "x\n",
    );
    assert!(registered.status.success(), "{}", stderr(&registered));
    let mut repl = spawn(&["--host", "127.0.0.1", "--port", &port], dir.path());
    repl.exp_string("Welcome back, ann (session resumed).")
        .unwrap();
    repl.exp_string("> ").unwrap();
    (server, repl)
}

#[test]
fn the_repl_says_exactly_one_line_when_a_real_upgrade_moves_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, mut repl) = repl_of_ann(&dir);
    enter(&mut repl, "one").unwrap();
    repl.exp_string("one").unwrap();
    let new = upgrade(&server);
    let said = repl
        .exp_string("reconnected: the server restarted")
        .unwrap();
    assert!(server.wait_exit(Duration::from_secs(15)).success());
    enter(&mut repl, "two").unwrap();
    let then = repl.exp_string("two").unwrap();
    enter(&mut repl, "/quit").unwrap();
    repl.exp_eof().unwrap();
    // Nothing else: no greeting, no password asked, no error.
    for text in [&said, &then] {
        for noise in [
            "Welcome",
            "Password",
            "Connected",
            "*",
            "error",
            "reconnected",
        ] {
            assert!(!text.contains(noise), "{noise:?} in {text:?}");
        }
    }
    assert!(new.is_running());
}

#[test]
fn over_tls_the_pipe_resumes_across_a_real_upgrade_with_the_same_key_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = AUTH.to_vec();
    args.push("--tls");
    let mut server = ServerProcess::start(dir.path(), &args, &[]);
    let port = server.addr().port();
    let tokens = token_file(&dir);
    let creds = [("ECHO_USER", "ann"), ("ECHO_PASSWORD", PASSWORD)];
    let first = ["--tls", "--trust", "accept-new", "--register"];
    let registered = pipe_to(port, &tokens, &first, &creds, "first\n");
    assert!(registered.status.success(), "{}", stderr(&registered));
    // Strict from here on: the new process must show the key recorded.
    let mut client = pipe_client(port, &tokens, &["--tls", "--trust", "strict"]);
    let mut input = client.stdin.take().unwrap();
    writeln!(input, "before").unwrap();
    thread::sleep(Duration::from_millis(300));
    let new = upgrade(&server);
    assert!(server.wait_exit(Duration::from_secs(15)).success());
    writeln!(input, "after").unwrap();
    drop(input);
    let output = client.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stderr(&output), "", "nothing asked, nothing reported");
    assert_eq!(stdout(&output), "before\nafter\n");
    assert!(new.is_running());
}

#[test]
fn a_line_half_typed_when_a_real_upgrade_moves_the_repl_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, mut repl) = repl_of_ann(&dir);
    repl.send("half").unwrap();
    repl.flush().unwrap();
    thread::sleep(Duration::from_millis(300));
    let new = upgrade(&server);
    repl.exp_string("reconnected: the server restarted")
        .unwrap();
    assert!(server.wait_exit(Duration::from_secs(15)).success());
    enter(&mut repl, " typed").unwrap();
    repl.exp_string("half typed").unwrap();
    enter(&mut repl, "/quit").unwrap();
    repl.exp_eof().unwrap();
    assert!(new.is_running());
}
