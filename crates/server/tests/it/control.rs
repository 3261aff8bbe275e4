//! Administration of a running server through its control socket: the
//! admin commands take effect at once, `clients` lists the connections and
//! `kick` ends them.
#![allow(clippy::unwrap_used)]

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use echo_proto::{ByeCause, ByeReason, ClientMsg, Secret};
use echo_server::control::{self, ControlRequest};
use echo_testkit::{ServerProcess, TestServer, auth_config, postgres::Postgres, test_config};

use echo_testkit::PASSWORD;

/// Sends `request` from a thread of its own (the client is blocking).
async fn ask(dir: &Path, request: ControlRequest) -> Result<String, String> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || control::request(&dir, None, &request))
        .await
        .unwrap()
        .map_err(|err| err.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_lists_connections_and_kick_ends_them() {
    let server = TestServer::start(test_config()).await;
    let dir = server.data.path().to_owned();
    let socket = control::socket_path(&dir, server.addr.port());
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let none = ask(&dir, ControlRequest::Clients { json: false }).await;
    assert_eq!(none.unwrap(), "no clients connected\n");
    let none = ask(&dir, ControlRequest::Clients { json: true }).await;
    assert_eq!(none.unwrap(), "[]");
    let mut ann = server.connect().await;
    assert_eq!(ann.ask(1, "hi").await, ["hi"]);
    let mut bob = server.connect_from("127.0.0.2").await;
    bob.identify("bob").await;
    let listed = ask(&dir, ControlRequest::Clients { json: true })
        .await
        .unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(list.len(), 2, "{listed}");
    let ann_line = list.iter().find(|c| c["user"] == "tester").unwrap();
    assert_eq!(ann_line["state"], "echo");
    assert_eq!(ann_line["messages"], 1);
    let id = ann_line["id"].as_str().unwrap().to_owned();
    let table = ask(&dir, ControlRequest::Clients { json: false })
        .await
        .unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("\ttester\techo\t")),
        "{table}"
    );

    let kicked = ask(
        &dir,
        ControlRequest::Kick {
            id: Some(id),
            user: None,
        },
    )
    .await;
    assert!(kicked.unwrap().ends_with("kicked"));
    assert_eq!(ann.bye_within_a_second().await, Some(ByeReason::Kicked));
    let by_user = ControlRequest::Kick {
        id: None,
        user: Some("bob".into()),
    };
    assert_eq!(
        ask(&dir, by_user).await.unwrap(),
        "1 connection(s) of bob kicked"
    );
    assert_eq!(bob.bye_within_a_second().await, Some(ByeReason::Kicked));
    let missing = ControlRequest::Kick {
        id: Some("00000000".into()),
        user: None,
    };
    assert_eq!(
        ask(&dir, missing).await.unwrap_err(),
        "no connection 00000000"
    );
    server.stop().await;
    assert!(!socket.exists(), "the socket is removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_take_effect_at_once_on_a_running_server() {
    let server = TestServer::start(auth_config()).await;
    let dir = server.data.path().to_owned();
    // A user added while the server runs logs in at once.
    let add = ControlRequest::UserAdd {
        name: "ann".into(),
        password: Secret::new(PASSWORD),
    };
    assert_eq!(ask(&dir, add).await.unwrap(), "user ann added");
    let login = ClientMsg::Login {
        user: "ann".into(),
        password: Secret::new(PASSWORD),
    };
    let (mut first, _) = server.welcomed(login.clone()).await;
    // A revocation ends the live connections it covers.
    let revoke = ControlRequest::SessionRevoke {
        user: "ANN".into(),
        id: None,
    };
    assert_eq!(
        ask(&dir, revoke).await.unwrap(),
        "1 session(s) of ann revoked"
    );
    assert_eq!(
        first.bye_and_cause_within_a_second().await,
        Some((ByeReason::Revoked, Some(ByeCause::Operator)))
    );
    // So does a new password.
    let mut second = server.welcomed(login).await.0;
    let passwd = ControlRequest::UserPasswd {
        name: "ann".into(),
        password: Secret::new("another horse battery"),
    };
    assert!(
        ask(&dir, passwd)
            .await
            .unwrap()
            .contains("password of ann changed")
    );
    assert_eq!(
        second.bye_and_cause_within_a_second().await,
        Some((ByeReason::Revoked, Some(ByeCause::PasswordChanged)))
    );
    let listed = ask(&dir, ControlRequest::UserList).await.unwrap();
    assert!(listed.starts_with("ann\tcreated "), "{listed}");
    // And removing the user.
    let mut third = server
        .welcomed(ClientMsg::Login {
            user: "ann".into(),
            password: Secret::new("another horse battery"),
        })
        .await
        .0;
    let remove = ControlRequest::UserRemove { name: "ann".into() };
    assert_eq!(ask(&dir, remove).await.unwrap(), "user ann removed");
    assert_eq!(
        third.bye_and_cause_within_a_second().await,
        Some((ByeReason::Revoked, Some(ByeCause::Operator)))
    );
    server.stop().await;
}

/// The server with a PostgreSQL store and a data directory that does not
/// exist: the directory is made (0700) and holds the control socket, and
/// `clients` reaches the server through it without being told the store,
/// and makes no file store on the way.
#[test]
fn a_postgres_server_makes_its_data_dir_and_control_socket() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(!data.exists());
    let url = pg.url();
    let args = ["--port", "0", "--mode", "ident", "--store", &url];
    let server = ServerProcess::start(dir.path(), &args, &[]);
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(control::socket_path(&data, server.port()).exists());
    let mut client = echo_testkit::connect_blocking(server.addr());
    echo_testkit::identify_blocking(&mut client, "ann");
    let clients = Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .args(["clients", "--json", "--data-dir"])
        .arg(&data)
        .env_remove("ECHO_SERVER_STORE")
        .env_remove("ECHO_SERVER_PORT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&clients.stdout);
    assert!(clients.status.success(), "{clients:?}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(list.len(), 1, "{listed}");
    assert_eq!(list[0]["user"], "ann", "{listed}");
    assert_eq!(list[0]["port"], server.port(), "{listed}");
    for file in ["echo.db", "store.journal", "store.lock"] {
        assert!(!data.join(file).exists(), "clients made {file}");
    }
}

/// A data directory where no socket can be made (its path is longer than
/// a Unix socket's address holds): the server says so in one sentence and
/// exits 1 instead of serving without `clients` and `kick`.
#[test]
fn a_server_that_cannot_make_its_control_socket_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d".repeat(110));
    let mut child = Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .args(["--port", "0", "--mode", "ident", "--data-dir"])
        .arg(&data)
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .env_remove("ECHO_SERVER_PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!("the server serves without a control socket: {output:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("echo-server: cannot make the control socket "),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "it never said it was listening");
}
