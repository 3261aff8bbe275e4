//! Administration of a running server through its control socket: the
//! admin commands take effect at once, `clients` lists the connections and
//! `kick` ends them.
#![allow(clippy::unwrap_used)]

mod common;

use std::{os::unix::fs::PermissionsExt, path::Path};

use common::{TestServer, auth_config, test_config};
use echo_proto::{ByeReason, ClientMsg, Secret};
use echo_server::control::{self, CONTROL_SOCKET, ControlRequest};

const PASSWORD: &str = "correct horse battery";

/// Sends `request` from a thread of its own (the client is blocking).
async fn ask(dir: &Path, request: ControlRequest) -> Result<String, String> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || control::request(&dir, &request))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_lists_connections_and_kick_ends_them() {
    let server = TestServer::start(test_config()).await;
    let dir = server.data.path().to_owned();
    let socket = dir.join(CONTROL_SOCKET);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
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
    let revoke = ControlRequest::SessionRevoke { user: "ANN".into() };
    assert_eq!(
        ask(&dir, revoke).await.unwrap(),
        "1 session(s) of ann revoked"
    );
    assert_eq!(first.bye_within_a_second().await, Some(ByeReason::Revoked));
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
    assert_eq!(second.bye_within_a_second().await, Some(ByeReason::Revoked));
    let listed = ask(&dir, ControlRequest::UserList).await.unwrap();
    assert!(listed.starts_with("ann\tcreated "), "{listed}");
    server.stop().await;
}
