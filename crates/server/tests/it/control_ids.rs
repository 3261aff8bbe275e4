//! The admin commands that pick one thing out: `session revoke USER --id
//! ID` (one session, by the id `session list` shows) and `ident list` /
//! `ident forget ADDRESS` (names known by address).
#![allow(clippy::unwrap_used)]

use std::{
    path::Path,
    process::{Command, Output},
};

use echo_proto::{ByeReason, ClientMsg, Secret};
use echo_server::control::{self, ControlRequest};
use echo_testkit::{PASSWORD, ServerProcess, TestServer, auth_config, test_config};

/// Sends `request` to the server of `dir`.
async fn ask(dir: &Path, request: ControlRequest) -> Result<String, String> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || control::request(&dir, None, &request))
        .await
        .unwrap()
        .map_err(|err| err.to_string())
}

fn list(user: &str) -> ControlRequest {
    ControlRequest::SessionList { user: user.into() }
}

fn revoke(user: &str, id: &str) -> ControlRequest {
    ControlRequest::SessionRevoke {
        user: user.into(),
        id: Some(id.into()),
    }
}

/// The ids in `session list`'s output, first column.
fn ids(listed: &str) -> Vec<String> {
    listed
        .lines()
        .map(|line| line.split('\t').next().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_is_revoked_by_its_id_and_only_its_connection_ends() {
    let server = TestServer::start(auth_config()).await;
    let dir = server.data.path().to_owned();
    let add = ControlRequest::UserAdd {
        name: "ann".into(),
        password: Secret::new(PASSWORD),
    };
    ask(&dir, add).await.unwrap();
    let none = ask(&dir, list("ann")).await.unwrap();
    assert_eq!(none, "ann has no live sessions\n");
    let login = ClientMsg::Login {
        user: "ann".into(),
        password: Secret::new(PASSWORD),
    };
    let (mut first, first_token) = server.welcomed(login.clone()).await;
    let first_id = ids(&ask(&dir, list("ann")).await.unwrap()).remove(0);
    assert_eq!(first_id.len(), 8, "{first_id}");
    assert!(first_id.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(
        !first_token.expose().contains(&first_id),
        "the id is not the token's"
    );
    let (mut second, _) = server.welcomed(login).await;
    let listed = ask(&dir, list("ann")).await.unwrap();
    let both = ids(&listed);
    assert_eq!(both.len(), 2, "{listed}");
    assert!(
        listed
            .lines()
            .all(|l| l.contains("\tstarted ") && l.contains("\texpires "))
    );

    let done = ask(&dir, revoke("ANN", &first_id.to_uppercase()))
        .await
        .unwrap();
    assert_eq!(done, format!("session {first_id} of ann revoked"));
    assert_eq!(first.bye_within_a_second().await, Some(ByeReason::Revoked));
    assert_eq!(second.ask(1, "still here").await, ["still here"]);
    let left = ids(&ask(&dir, list("ann")).await.unwrap());
    assert_eq!(left.len(), 1);
    assert_ne!(left[0], first_id);

    let again = ask(&dir, revoke("ann", &first_id)).await.unwrap_err();
    assert_eq!(again, format!("ann has no session {first_id}"));
    let bad = ask(&dir, revoke("ann", "xyz")).await.unwrap_err();
    assert!(bad.starts_with("\"xyz\" is not a session id"), "{bad}");
    let nobody = ask(&dir, revoke("zed", &first_id)).await.unwrap_err();
    assert_eq!(nobody, "no user \"zed\"");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_forgotten_is_greeted_as_new() {
    let server = TestServer::start(test_config()).await;
    let dir = server.data.path().to_owned();
    let none = ask(&dir, ControlRequest::IdentList).await.unwrap();
    assert_eq!(none, "no names known by address\n");
    let mut bob = server.connect_from("127.0.0.2").await;
    assert_eq!(bob.identify("bob").await, ("bob".into(), false));
    drop(bob);
    let mut again = server.connect_from("127.0.0.2").await;
    assert_eq!(again.identify("ignored").await, ("bob".into(), true));
    drop(again);

    let listed = ask(&dir, ControlRequest::IdentList).await.unwrap();
    assert!(listed.starts_with("127.0.0.2\tbob\tlast seen "), "{listed}");
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let forget = |address: &str| ControlRequest::IdentForget {
        address: address.into(),
    };
    let done = ask(&dir, forget("127.0.0.2")).await.unwrap();
    assert_eq!(
        done,
        "127.0.0.2 forgotten: its next visit is greeted as new"
    );
    let unknown = ask(&dir, forget("127.0.0.2")).await.unwrap_err();
    assert_eq!(unknown, "no name is known for 127.0.0.2");
    let bad = ask(&dir, forget("bob")).await.unwrap_err();
    assert!(bad.starts_with("\"bob\" is not an IP address"), "{bad}");

    let mut back = server.connect_from("127.0.0.2").await;
    assert_eq!(back.identify("robert").await, ("robert".into(), false));
    server.stop().await;
}

/// `echo-server --data-dir DIR/data ARGS`.
fn admin(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .env_remove("ECHO_SERVER_PORT")
        .env_remove("ECHO_SERVER_STORE")
        .output()
        .unwrap()
}

/// The commands as typed: through the running server, then on the store
/// it left (the forgetting was kept).
#[test]
fn ident_commands_work_with_and_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["--port", "0", "--mode", "ident"], &[]);
    let mut client = echo_testkit::connect_blocking(server.addr());
    echo_testkit::identify_blocking(&mut client, "ann");
    drop(client);
    let listed = admin(dir.path(), &["ident", "list"]);
    let shown = String::from_utf8_lossy(&listed.stdout);
    assert!(
        shown.starts_with("127.0.0.1\tann\tlast seen "),
        "{listed:?}"
    );
    let forgot = admin(dir.path(), &["ident", "forget", "127.0.0.1"]);
    assert!(forgot.status.success(), "{forgot:?}");
    let unknown = admin(dir.path(), &["ident", "forget", "127.0.0.9"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&unknown.stderr),
        "echo-server: no name is known for 127.0.0.9\n"
    );
    drop(server);
    let listed = admin(dir.path(), &["ident", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "no names known by address\n"
    );
    let revoke = admin(
        dir.path(),
        &["session", "revoke", "nobody", "--id", "0123abcd"],
    );
    assert_eq!(
        String::from_utf8_lossy(&revoke.stderr),
        "echo-server: no user \"nobody\"\n"
    );
}
