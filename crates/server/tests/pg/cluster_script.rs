//! `scripts/cluster.sh`: PostgreSQL, three servers and HAProxy in one
//! command; a client gets through; Ctrl-C (SIGINT) stops everything and
//! removes what it made.
#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use echo_proto::{ServerMsg, ext::BlockingFrameRead};
use echo_testkit::{cluster::dial_from, free_port, haproxy::haproxy};

#[test]
fn one_command_starts_the_cluster_and_ctrl_c_removes_it() {
    if haproxy().is_none() || !echo_testkit::postgres::Postgres::available() {
        return;
    }
    let lb = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/cluster.sh");
    let mut child = Command::new("bash")
        .arg(script)
        .env("ECHO_SERVER_BIN", env!("CARGO_BIN_EXE_echo-server"))
        .env("ECHO_MODE", "ident")
        .env("ECHO_LB_PORT", lb.to_string())
        .env("ECHO_LB_STATS_PORT", free_port().to_string())
        .env("ECHO_S1_HEALTH", free_port().to_string())
        .env("ECHO_S2_HEALTH", free_port().to_string())
        .env("ECHO_S3_HEALTH", free_port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut said = String::new();
    while !said.contains("Ctrl-C stops everything") {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the script ended: {said}"
        );
        said.push_str(&line);
    }
    assert!(said.contains(&format!("echo-client --port {lb}")), "{said}");
    let work = said
        .lines()
        .find_map(|l| l.strip_prefix("Ctrl-C stops everything and removes "))
        .unwrap()
        .to_owned();
    let mut stream = dial_from("127.0.0.5", format!("127.0.0.1:{lb}").parse().unwrap());
    assert!(matches!(
        stream.recv_msg::<ServerMsg>().unwrap(),
        Some(ServerMsg::AskName {})
    ));
    drop(stream);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the script did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !std::path::Path::new(&work).exists(),
        "{work} is left behind"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", lb)).is_err(),
        "HAProxy is still listening"
    );
}
