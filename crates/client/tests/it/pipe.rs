//! The client binary run in pipe mode against a `TestServer` (from
//! `echo-testkit`, on a thread of its own), and its output.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use echo_testkit::TestServer;

pub const CLIENT: &str = env!("CARGO_BIN_EXE_echo-client");

/// Runs the client in pipe mode with `input` on standard input.
pub fn pipe(
    server: &TestServer,
    tokens: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    input: &str,
) -> Output {
    pipe_to(server.addr.port(), tokens, args, env, input)
}

/// [`pipe`] to whatever listens on `port` of 127.0.0.1.
pub fn pipe_to(
    port: u16,
    tokens: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    input: &str,
) -> Output {
    let mut command = Command::new(CLIENT);
    command
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--token-file")
        .arg(tokens)
        .args(args)
        .env_remove("ECHO_USER")
        .env_remove("ECHO_PASSWORD")
        .env_remove("ECHO_CLIENT_HOST")
        .env_remove("ECHO_CLIENT_PORT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn token_file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state/tokens.json")
}
