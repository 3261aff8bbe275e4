//! The server's TLS port as an operator runs it: the generated pair, its
//! fingerprint, the handshake timeout, the switches.
#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use echo_testkit::ServerProcess;
use nix::sys::signal::Signal;

const SERVER: &str = env!("CARGO_BIN_EXE_echo-server");

/// The fingerprint at the end of a TLS server's listening line.
fn key_of(line: &str) -> String {
    let key = line
        .split("(TLS key ")
        .nth(1)
        .unwrap_or_else(|| panic!("{line}"));
    key.trim_end_matches(')').to_owned()
}

fn fingerprint_command(data: &Path) -> std::process::Output {
    Command::new(SERVER)
        .args(["tls", "fingerprint", "--data-dir"])
        .arg(data)
        .output()
        .unwrap()
}

#[test]
fn the_first_start_makes_a_private_pair_and_later_starts_show_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Nothing yet: the command says so and fails.
    let out = fingerprint_command(&data);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the TLS certificate"));

    let mut server = ServerProcess::start(dir.path(), &["--tls", "--port", "0"], &[]);
    let key = key_of(&server.first_line);
    assert!(key.starts_with("SHA256:") && key.len() == 7 + 43, "{key}");
    let mode = std::fs::metadata(data.join("tls/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = fingerprint_command(&data);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), key);
    let log = echo_testkit::read_logs(dir.path());
    assert!(
        log.contains(&format!("tls=\"{key}\"")) || log.contains(&format!("tls={key}")),
        "{log}"
    );
    assert!(!log.contains("PRIVATE KEY"));
    server.signal(Signal::SIGTERM);
    server.wait_exit(Duration::from_secs(10));

    // The environment switch, and the same pair reused.
    let server = ServerProcess::start(dir.path(), &["--port", "0"], &[("ECHO_SERVER_TLS", "1")]);
    assert_eq!(key_of(&server.first_line), key);
}

#[test]
fn a_bad_switch_in_the_environment_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(SERVER)
        .args(["--port", "0", "--data-dir"])
        .arg(dir.path())
        .env("ECHO_SERVER_TLS", "maybe")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ECHO_SERVER_TLS"));
}

#[test]
fn the_handshake_timeout_covers_the_tls_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--tls", "--port", "0", "--handshake-timeout", "1"];
    let server = ServerProcess::start(dir.path(), &args, &[]);
    let mut tcp = TcpStream::connect(server.addr()).unwrap();
    // The start of a ClientHello record, and then nothing.
    tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0x40]).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let closed = loop {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break started.elapsed(),
            Ok(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never closed");
    };
    assert!(closed < Duration::from_secs(5), "closed after {closed:?}");
}
