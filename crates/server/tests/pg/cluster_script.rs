//! `scripts/cluster.sh`: PostgreSQL, three servers and HAProxy in one
//! command; a client gets through; Ctrl-C (SIGINT) stops everything and
//! removes what it made. A busy port is named before anything starts, and
//! what fails to start has its last log lines printed.
#![allow(clippy::unwrap_used)]

use std::{net::TcpListener, time::Duration};

use echo_proto::{ServerMsg, ext::BlockingFrameRead};
use echo_testkit::{
    cluster::dial_from,
    cluster_script::{ClusterScript, Ports},
    haproxy::haproxy,
    postgres::Postgres,
};

/// Whether HAProxy and PostgreSQL are here (else one line said why).
fn parts_installed() -> bool {
    haproxy().is_some() && Postgres::available()
}

#[test]
fn one_command_starts_the_cluster_and_ctrl_c_removes_it() {
    if !parts_installed() {
        return;
    }
    let ports = Ports::free();
    let mut script = ClusterScript::spawn(ports, &[("ECHO_MODE", "ident")]);
    let banner = script.wait_up(Duration::from_secs(90));
    let said = script.stdout();
    assert!(
        said.contains(&format!("echo-client --port {}", ports.lb)),
        "{said}"
    );
    assert_eq!(banner.servers.len(), 3, "{said}");
    let mut stream = dial_from("127.0.0.5", ports.lb_addr());
    assert!(matches!(
        stream.recv_msg::<ServerMsg>().unwrap(),
        Some(ServerMsg::AskName {})
    ));
    drop(stream);
    let status = script.interrupt(Duration::from_secs(30));
    assert!(
        status.is_some(),
        "the script did not stop: {}",
        script.said()
    );
    assert!(
        !banner.work.exists(),
        "{} is left behind",
        banner.work.display()
    );
    assert!(
        std::net::TcpStream::connect(ports.lb_addr()).is_err(),
        "HAProxy is still listening"
    );
    assert_eq!(script.processes_left(), Vec::<String>::new());
}

#[test]
fn a_busy_port_is_named_with_its_variable_and_nothing_starts() {
    // Only HAProxy is looked for before the ports are checked.
    if haproxy().is_none() {
        return;
    }
    // Someone's server on the balancer's port (as the README's first
    // command leaves it), another on server 2's health port.
    let lb = TcpListener::bind("127.0.0.1:0").unwrap();
    let health = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut ports = Ports::free();
    ports.lb = lb.local_addr().unwrap().port();
    ports.health[1] = health.local_addr().unwrap().port();
    let mut script = ClusterScript::spawn(ports, &[]);
    let status = script.wait_exit(Duration::from_secs(20));
    let status = status.unwrap_or_else(|| panic!("still running: {}", script.said()));
    assert!(!status.success(), "{}", script.said());
    let stderr = script.stderr();
    for (port, var) in [
        (ports.lb, "ECHO_LB_PORT"),
        (ports.health[1], "ECHO_S2_HEALTH"),
    ] {
        let sentence = format!("cluster.sh: port {port} is in use (set {var} to another port)\n");
        assert!(stderr.contains(&sentence), "{}", script.said());
    }
    assert!(!script.stdout().contains("cluster up"), "{}", script.said());
    assert_eq!(script.left_behind(), Vec::<std::path::PathBuf>::new());
    assert_eq!(script.processes_left(), Vec::<String>::new());
}

#[test]
fn a_server_that_cannot_start_has_its_last_log_lines_printed_before_the_cleanup() {
    if !parts_installed() {
        return;
    }
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "max_connections = \"lots\"\n").unwrap();
    let config_path = config.path().display().to_string();
    let mut script = ClusterScript::spawn(
        Ports::free(),
        &[("ECHO_SERVER_CONFIG", config_path.as_str())],
    );
    let status = script.wait_exit(Duration::from_secs(90));
    let status = status.unwrap_or_else(|| panic!("still running: {}", script.said()));
    assert!(!status.success(), "{}", script.said());
    let stderr = script.stderr();
    // The script's own words, then the server's error from its log.
    let died = stderr.find("cluster.sh: server 1 (pid ");
    let error = stderr.find("invalid type: string \"lots\", expected usize");
    assert!(
        stderr.contains("exited with status 1 before listening"),
        "{}",
        script.said()
    );
    assert!(
        matches!((died, error), (Some(d), Some(e)) if d < e),
        "{}",
        script.said()
    );
    assert!(
        stderr.contains("cluster.sh: server 1 did not start"),
        "{}",
        script.said()
    );
    assert!(!script.stdout().contains("cluster up"), "{}", script.said());
    assert_eq!(script.left_behind(), Vec::<std::path::PathBuf>::new());
    assert_eq!(script.processes_left(), Vec::<String>::new());
}
