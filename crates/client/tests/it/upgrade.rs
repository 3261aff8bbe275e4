//! The real `echo-client` across real `echo-server upgrade`s: a pipe that
//! keeps sending while the server is replaced twice gets every line
//! answered once, in order, and is never asked for a password.

use std::{
    io::Write,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use echo_testkit::{KillOnDrop, PASSWORD, ServerProcess};

use crate::pipe::{CLIENT, pipe_to, stderr, stdout, token_file};

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
