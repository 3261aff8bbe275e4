//! Identification and authentication against a real server on loopback.
#![allow(clippy::unwrap_used)]

use echo_proto::{ByeReason, ClientMsg, ErrorCode, ServerMsg};
use echo_testkit::{ManualClock, TestClient, TestServer, auth_config, test_config};
use echo_testkit::{login, register};

use echo_testkit::PASSWORD;

/// Connects in auth mode and reads `ask_auth`, returning its suggestion.
pub(super) async fn connect_auth(server: &TestServer) -> (TestClient, Option<String>) {
    let mut client = server.connect_raw().await;
    match client.recv().await {
        ServerMsg::AskAuth { suggested_user } => (client, suggested_user),
        other => panic!("expected ask_auth, got {other:?}"),
    }
}

/// Sends `msg` and expects `welcome`; returns the token.
pub(super) async fn expect_welcome(client: &mut TestClient, msg: &ClientMsg, user: &str) -> String {
    client.send(msg).await;
    match client.recv().await {
        ServerMsg::Welcome { user: u, token, .. } => {
            assert_eq!(u, user);
            token.expose().to_owned()
        }
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// Sends `msg` and expects an error with `code`; returns `attempts_left`.
pub(super) async fn expect_error(
    client: &mut TestClient,
    msg: &ClientMsg,
    code: ErrorCode,
) -> Option<u32> {
    client.send(msg).await;
    match client.recv().await {
        ServerMsg::Error {
            code: got,
            fatal: false,
            attempts_left,
            ..
        } if got == code => attempts_left,
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

pub(super) async fn registered(server: &TestServer, user: &str) -> String {
    let (mut client, _) = connect_auth(server).await;
    expect_welcome(&mut client, &register(user, PASSWORD), user).await
}

#[tokio::test]
async fn identification_asks_unknown_addresses_and_greets_known_ones() {
    let server = TestServer::start(test_config()).await;
    let mut first = server.connect_from("127.0.0.2").await;
    assert_eq!(first.recv().await, ServerMsg::AskName {});
    first
        .send(&ClientMsg::Name {
            name: "  Ann  ".into(),
        })
        .await;
    assert_eq!(
        first.recv().await,
        ServerMsg::Greet {
            name: "Ann".into(),
            known: false
        }
    );
    assert_eq!(
        first.ask(1, "/whoami").await[0].split(',').next().unwrap(),
        "you are Ann"
    );

    let mut again = server.connect_from("127.0.0.2").await;
    assert_eq!(
        again.recv().await,
        ServerMsg::Greet {
            name: "Ann".into(),
            known: true
        }
    );
    assert_eq!(again.ask(1, "hi").await, vec!["hi"]);

    let mut other = server.connect_from("127.0.0.3").await;
    assert_eq!(other.recv().await, ServerMsg::AskName {});
    server.stop().await;
}

#[tokio::test]
async fn a_bad_name_is_refused_and_asked_again() {
    let server = TestServer::start(test_config()).await;
    let mut client = server.connect_from("127.0.0.4").await;
    assert_eq!(client.recv().await, ServerMsg::AskName {});
    for bad in ["   ", &"x".repeat(65), "tab\there"] {
        client.send(&ClientMsg::Name { name: bad.into() }).await;
        assert!(matches!(
            client.recv().await,
            ServerMsg::Error {
                code: ErrorCode::InvalidName,
                fatal: false,
                ..
            }
        ));
        assert_eq!(client.recv().await, ServerMsg::AskName {});
    }
    client.send(&ClientMsg::Name { name: "Bob".into() }).await;
    assert_eq!(
        client.recv().await,
        ServerMsg::Greet {
            name: "Bob".into(),
            known: false
        }
    );
    server.stop().await;
}

#[tokio::test]
async fn identities_survive_a_restart() {
    let server = TestServer::start(test_config()).await;
    let mut client = server.connect_from("127.0.0.5").await;
    client.identify("Cleo").await;
    let data = tempfile::tempdir().unwrap();
    let path = server.data.path().to_owned();
    drop(client);
    let TestServer {
        shutdown,
        task,
        store,
        data: old,
        ..
    } = server;
    shutdown.cancel();
    task.await.unwrap();
    drop(store);
    let store = echo_server::store::SqliteStore::open(
        &path.join(echo_server::store::sqlite::DB_FILE),
        test_config().lifetimes(),
    )
    .await
    .unwrap();
    let server = TestServer::start_on(test_config(), store, data, None).await;
    let mut client = server.connect_from("127.0.0.5").await;
    assert_eq!(client.identify("ignored").await, ("Cleo".into(), true));
    drop(old);
    server.stop().await;
}

#[tokio::test]
async fn the_suggested_user_can_be_turned_off() {
    let mut config = auth_config();
    config.auth.suggest_user = false;
    let server = TestServer::start(config).await;
    registered(&server, "ann").await;
    let (_, suggested) = connect_auth(&server).await;
    assert_eq!(suggested, None, "suggest_user = false still named the user");
    server.stop().await;
}

#[tokio::test]
async fn register_then_login_with_the_right_password() {
    let server = TestServer::start(auth_config()).await;
    let (mut client, suggested) = connect_auth(&server).await;
    assert_eq!(suggested, None);
    let token = expect_welcome(&mut client, &register("ann", PASSWORD), "ann").await;
    assert_eq!(token.len(), 64);
    assert!(client.ask(1, "/whoami").await[0].starts_with("you are ann,"));

    let (mut client, suggested) = connect_auth(&server).await;
    assert_eq!(
        suggested.as_deref(),
        Some("ann"),
        "the address now suggests its user"
    );
    let left = expect_error(
        &mut client,
        &login("ann", "wrong horse battery"),
        ErrorCode::InvalidCredentials,
    )
    .await;
    assert_eq!(left, Some(4));
    let again = expect_welcome(&mut client, &login("ann", PASSWORD), "ann").await;
    assert_ne!(again, token);
    assert_eq!(client.ask(2, "hello").await, vec!["hello"]);
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_user_gets_the_same_answer_as_a_wrong_password() {
    let server = TestServer::start(auth_config()).await;
    registered(&server, "ann").await;
    let (mut client, _) = connect_auth(&server).await;
    client.send(&login("ann", "wrong horse battery")).await;
    let wrong = client.recv().await;
    client.send(&login("nobody", "wrong horse battery")).await;
    let unknown = client.recv().await;
    let strip = |msg: ServerMsg| match msg {
        ServerMsg::Error {
            code,
            message,
            fatal,
            ..
        } => (code, message, fatal),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(strip(wrong), strip(unknown));
    server.stop().await;
}

#[tokio::test]
async fn five_failures_on_one_connection_end_it() {
    let server = TestServer::start(auth_config()).await;
    let (mut client, _) = connect_auth(&server).await;
    for left in (1..5).rev() {
        let got = expect_error(
            &mut client,
            &login("ghost", "wrong horse battery"),
            ErrorCode::InvalidCredentials,
        )
        .await;
        assert_eq!(got, Some(left));
    }
    client.send(&login("ghost", "wrong horse battery")).await;
    assert!(matches!(
        client.recv().await,
        ServerMsg::Error {
            code: ErrorCode::InvalidCredentials,
            attempts_left: Some(0),
            ..
        }
    ));
    assert_eq!(
        client.recv().await,
        ServerMsg::bye(ByeReason::TooManyAttempts)
    );
    assert!(client.try_recv().await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn an_account_backs_off_after_five_failures_whatever_the_connection() {
    // The clock stands still: the fifth failure's 1 s back-off cannot run
    // out between it and the next attempt, however slow the machine.
    let clock = ManualClock::at(1_000_000);
    let server = TestServer::start_with_clock(auth_config(), Some(clock.clone())).await;
    registered(&server, "ann").await;
    for _ in 0..5 {
        let (mut client, _) = connect_auth(&server).await;
        expect_error(
            &mut client,
            &login("ann", "wrong horse battery"),
            ErrorCode::InvalidCredentials,
        )
        .await;
    }
    let (mut client, _) = connect_auth(&server).await;
    // Even the right password waits out the back-off.
    expect_error(&mut client, &login("ann", PASSWORD), ErrorCode::RateLimited).await;
    clock.advance(1);
    let (mut client, _) = connect_auth(&server).await;
    client.send(&login("ann", PASSWORD)).await;
    assert!(matches!(client.recv().await, ServerMsg::Welcome { .. }));
    server.stop().await;
}

#[tokio::test]
async fn an_address_gets_a_limited_number_of_password_attempts() {
    let mut config = auth_config();
    config.auth.attempts_per_minute = 3;
    let server = TestServer::start(config).await;
    let (mut client, _) = connect_auth(&server).await;
    for user in ["a1", "a2", "a3"] {
        expect_error(
            &mut client,
            &login(user, "wrong horse battery"),
            ErrorCode::InvalidCredentials,
        )
        .await;
    }
    let (mut client, _) = connect_auth(&server).await;
    expect_error(
        &mut client,
        &login("a4", "wrong horse battery"),
        ErrorCode::RateLimited,
    )
    .await;
    expect_error(
        &mut client,
        &register("newbie", PASSWORD),
        ErrorCode::RateLimited,
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_taken_name_and_weak_passwords_are_refused_with_reasons() {
    let server = TestServer::start(auth_config()).await;
    registered(&server, "ann").await;
    let (mut client, _) = connect_auth(&server).await;
    let left = expect_error(
        &mut client,
        &register("ann", PASSWORD),
        ErrorCode::NameTaken,
    )
    .await;
    assert_eq!(left, None, "no password was checked: no attempt used");
    for weak in ["short", "password", "12345678"] {
        client.send(&register("bob", weak)).await;
        match client.recv().await {
            ServerMsg::Error {
                code: ErrorCode::WeakPassword,
                message,
                fatal: false,
                ..
            } => {
                assert!(message.starts_with("the password is"), "{message}");
            }
            other => panic!("{weak}: unexpected {other:?}"),
        }
    }
    expect_welcome(&mut client, &register("bob", PASSWORD), "bob").await;
    let (mut client, _) = connect_auth(&server).await;
    expect_error(
        &mut client,
        &register("cid", "qwertyuiop"),
        ErrorCode::WeakPassword,
    )
    .await;
    let huge = "x".repeat(2000);
    expect_error(
        &mut client,
        &register("cid", &huge),
        ErrorCode::WeakPassword,
    )
    .await;
    expect_error(
        &mut client,
        &register(" ", PASSWORD),
        ErrorCode::InvalidName,
    )
    .await;
    expect_welcome(&mut client, &register("cid", PASSWORD), "cid").await;
    server.stop().await;
}

#[tokio::test]
async fn refusals_before_any_password_check_cost_no_attempt() {
    let mut config = auth_config();
    // Ten password attempts a minute from this address: a refused name
    // takes none of them.
    config.auth.attempts_per_minute = 10;
    let server = TestServer::start(config).await;
    registered(&server, "ann").await;
    let (mut client, _) = connect_auth(&server).await;
    for _ in 0..6 {
        let weak = register("bob", "password");
        let left = expect_error(&mut client, &weak, ErrorCode::WeakPassword).await;
        assert_eq!(left, None);
    }
    for _ in 0..3 {
        let bad_name = register("a\u{7}b", PASSWORD);
        let left = expect_error(&mut client, &bad_name, ErrorCode::InvalidName).await;
        assert_eq!(left, None);
        let taken = register("ann", PASSWORD);
        let left = expect_error(&mut client, &taken, ErrorCode::NameTaken).await;
        assert_eq!(left, None);
    }
    // Still on the same connection, and still within the allowance.
    expect_welcome(&mut client, &login("ann", PASSWORD), "ann").await;
    server.stop().await;
}
