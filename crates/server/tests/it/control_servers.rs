//! Several servers of one data directory (as two servers of one PostgreSQL
//! database started from one directory): each has a control socket named
//! after its port, `clients` and `kick` reach every one of them (or the one
//! named with `--port`), and a socket left by a killed server is cleaned up.
#![allow(clippy::unwrap_used)]

use std::{
    path::Path,
    process::{Command, Output, Stdio},
};

use echo_proto::ByeReason;
use echo_server::control::{self, ControlRequest};
use echo_testkit::{ServerProcess, TestServer, postgres::Postgres, test_config};

/// Sends `request` to the servers of `dir` (or the one on `port`).
async fn ask(dir: &Path, port: Option<u16>, request: ControlRequest) -> Result<String, String> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || control::request(&dir, port, &request))
        .await
        .unwrap()
        .map_err(|err| err.to_string())
}

fn clients_json() -> ControlRequest {
    ControlRequest::Clients { json: true }
}

fn kick(id: &str) -> ControlRequest {
    ControlRequest::Kick {
        id: Some(id.into()),
        user: None,
    }
}

/// `echo-server ARGS --data-dir DATA` with no store or port from the
/// environment.
fn admin(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("ECHO_SERVER_STORE")
        .env_remove("ECHO_SERVER_PORT")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_kick_reach_every_server_of_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestServer::start_with_control_in(test_config(), dir.path()).await;
    let second = TestServer::start_with_control_in(test_config(), dir.path()).await;
    let (one, two) = (first.addr.port(), second.addr.port());
    assert!(control::socket_path(dir.path(), one).exists());
    assert!(control::socket_path(dir.path(), two).exists());
    let mut ann = first.connect_from("127.0.0.2").await;
    ann.identify("ann").await;
    let mut bob = second.connect_from("127.0.0.3").await;
    bob.identify("bob").await;

    let listed = ask(dir.path(), None, clients_json()).await.unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    let port_of = |user: &str| list.iter().find(|c| c["user"] == user).unwrap()["port"].clone();
    assert_eq!(list.len(), 2, "{listed}");
    assert_eq!((port_of("ann"), port_of("bob")), (one.into(), two.into()));
    let bob_id = list.iter().find(|c| c["user"] == "bob").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let table = ask(dir.path(), None, ControlRequest::Clients { json: false }).await;
    let table = table.unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.contains("\tann\t") && l.ends_with(&format!("\tport {one}"))),
        "{table}"
    );
    // --port: that server only.
    let only = ask(dir.path(), Some(two), clients_json()).await.unwrap();
    let only: Vec<serde_json::Value> = serde_json::from_str(&only).unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["user"], "bob");

    // A kick succeeds where the connection is; the other server's "no such
    // connection" does not make it fail.
    let kicked = ask(dir.path(), None, kick(&bob_id)).await.unwrap();
    assert_eq!(kicked, format!("port {two}: connection {bob_id} kicked"));
    assert_eq!(bob.bye_within_a_second().await, Some(ByeReason::Kicked));
    let missing = ask(dir.path(), None, kick("00000000")).await;
    assert_eq!(missing.unwrap_err(), "no connection 00000000");
    let by_user = ControlRequest::Kick {
        id: None,
        user: Some("ann".into()),
    };
    let kicked = ask(dir.path(), None, by_user).await.unwrap();
    assert!(
        kicked.contains(&format!("port {one}: 1 connection(s) of ann kicked")),
        "{kicked}"
    );
    assert!(
        kicked.contains(&format!("port {two}: 0 connection(s) of ann kicked")),
        "{kicked}"
    );
    assert_eq!(ann.bye_within_a_second().await, Some(ByeReason::Kicked));
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_is_removed_and_its_port_taken_again() {
    let dir = tempfile::tempdir().unwrap();
    // A socket file nothing listens on, as a server killed with -9 leaves.
    let port = 40_000;
    let stale = control::socket_path(dir.path(), port);
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let none = ask(dir.path(), None, clients_json()).await.unwrap_err();
    let absolute = std::path::absolute(dir.path()).unwrap();
    assert_eq!(
        none,
        format!(
            "no echo-server is running on the data directory {} (no control socket there answers)",
            absolute.display()
        )
    );
    assert!(
        !stale.exists(),
        "the admin command removed the stale socket"
    );

    // A server starting on the port of a stale socket takes its place; one
    // on the port of a live one does not.
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let live = control::bind(dir.path(), port).unwrap();
    let refused = control::bind(dir.path(), port).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::AddrInUse);
    assert!(live.path().exists());
    let asked = ask(dir.path(), Some(port + 1), clients_json()).await;
    assert!(asked.unwrap_err().starts_with(&format!(
        "no echo-server on port {} is running on the data directory",
        port + 1
    )));
}

/// The store's commands work on the store itself (SQLite's file is shared
/// by every process), so several servers in the data directory need no
/// `--port`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_commands_need_no_port_when_several_servers_run() {
    let holder = TestServer::start(test_config()).await;
    let data = holder.data.path().to_owned();
    let other = TestServer::start_with_control_in(test_config(), &data).await;
    let output = tokio::task::spawn_blocking(move || admin(&data, &["user", "list"]))
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "no users");
    other.stop().await;
    holder.stop().await;
}

/// With no server, `clients` says so in one sentence, names the directory
/// it looked in, and makes nothing there (not even the directory).
#[test]
fn clients_with_no_server_says_so_and_makes_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for args in [
        &["clients"][..],
        &["kick", "5bf3a46c"],
        &["clients", "--port", "13132"],
    ] {
        let output = admin(&data, args);
        let said = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {said}");
        assert_eq!(said.lines().count(), 1, "{said}");
        assert!(said.contains("is running on the data directory"), "{said}");
        assert!(said.contains(&data.display().to_string()), "{said}");
    }
    assert!(!data.exists(), "an admin command made {}", data.display());
}

/// Lab task 4 with PostgreSQL: two servers started from one directory, the
/// second moved to the next port. Both are listed, without `--store`; one
/// killed with -9 leaves a socket that the next `clients` removes.
#[test]
fn two_postgres_servers_in_one_directory_are_both_listed() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = pg.url();
    let first = ServerProcess::start(
        dir.path(),
        &["--port", "0", "--mode", "ident", "--store", &url],
        &[],
    );
    let port = first.port().to_string();
    let mut second = ServerProcess::start(
        dir.path(),
        &["--port", &port, "--mode", "ident", "--store", &url],
        &[],
    );
    // Moved on (past other tests' ports too, when they took the next).
    assert!(
        second
            .first_line
            .contains(&format!("(port {port} was busy)"))
            || second.first_line.contains(&format!("(ports {port}-")),
        "{}",
        second.first_line
    );
    // One client on each (one address: one name, shared by the database).
    let mut on_first = echo_testkit::connect_blocking(first.addr());
    echo_testkit::identify_blocking(&mut on_first, "ann");
    let mut on_second = echo_testkit::connect_blocking(second.addr());
    echo_testkit::identify_blocking(&mut on_second, "ann");
    let ports_listed = |args: &[&str]| {
        let output = admin(&data, args);
        assert!(output.status.success(), "{output:?}");
        let list: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
        let mut ports: Vec<u64> = list.iter().map(|c| c["port"].as_u64().unwrap()).collect();
        ports.sort_unstable();
        ports
    };
    let (one, two) = (u64::from(first.port()), u64::from(second.port()));
    assert_eq!(ports_listed(&["clients", "--json"]), [one, two]);
    let named = second.port().to_string();
    assert_eq!(
        ports_listed(&["clients", "--json", "--port", &named]),
        [two]
    );

    second.signal(nix::sys::signal::Signal::SIGKILL);
    second.wait_exit(std::time::Duration::from_secs(10));
    let stale = control::socket_path(&data, second.port());
    assert!(stale.exists(), "a killed server leaves its socket");
    assert_eq!(ports_listed(&["clients", "--json"]), [one]);
    assert!(!stale.exists(), "clients removed the stale socket");
    for file in ["echo.db", "store.journal", "store.lock"] {
        assert!(!data.join(file).exists(), "clients made {file}");
    }
}
