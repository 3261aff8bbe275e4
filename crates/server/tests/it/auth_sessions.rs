//! Sessions against a real server on loopback: tokens rotate, replays
//! revoke the chain, tokens expire, logout revokes, and the store keeps
//! neither passwords nor tokens in clear.
#![allow(clippy::unwrap_used)]

use echo_proto::{ByeCause, ByeReason, ClientMsg, ErrorCode, ServerMsg};
use echo_testkit::{ManualClock, TestClient, TestServer, auth_config};
use echo_testkit::{login, register, resume};

use echo_testkit::PASSWORD;
const DAY: u64 = 86_400;
const T0: u64 = 1_800_000_000;

use super::auth::{connect_auth, expect_error, expect_welcome, registered};

#[tokio::test]
async fn resume_rotates_the_token_and_the_old_one_then_fails() {
    let server = TestServer::start(auth_config()).await;
    let first = registered(&server, "ann").await;
    let (mut client, _) = connect_auth(&server).await;
    let second = expect_welcome(&mut client, &resume(&first), "ann").await;
    assert_ne!(second, first);
    assert_eq!(client.ask(1, "back").await, vec!["back"]);
    let (mut client, _) = connect_auth(&server).await;
    let third = expect_welcome(&mut client, &resume(&second), "ann").await;
    assert_ne!(third, second);
    server.stop().await;
}

#[tokio::test]
async fn replaying_a_rotated_token_revokes_the_whole_chain() {
    let server = TestServer::start(auth_config()).await;
    let stolen = registered(&server, "ann").await;
    let (mut client, _) = connect_auth(&server).await;
    let current = expect_welcome(&mut client, &resume(&stolen), "ann").await;

    let (mut thief, _) = connect_auth(&server).await;
    thief.send(&resume(&stolen)).await;
    assert!(matches!(
        thief.recv().await,
        ServerMsg::Error {
            code: ErrorCode::TokenInvalid,
            ..
        }
    ));
    assert!(
        matches!(thief.recv().await, ServerMsg::AskAuth { .. }),
        "asked for the password again"
    );

    // The rightful holder's newer token died with the chain.
    let (mut client, _) = connect_auth(&server).await;
    expect_error(&mut client, &resume(&current), ErrorCode::TokenInvalid).await;
    server.stop().await;
}

#[tokio::test]
async fn resume_may_come_before_ask_auth_is_read() {
    let server = TestServer::start(auth_config()).await;
    let token = registered(&server, "ann").await;
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut client = TestClient { stream };
    client.send(&resume(&token)).await;
    assert!(matches!(client.recv().await, ServerMsg::Hello { .. }));
    assert!(matches!(client.recv().await, ServerMsg::AskAuth { .. }));
    assert!(matches!(client.recv().await, ServerMsg::Welcome { .. }));
    server.stop().await;
}

#[tokio::test]
async fn garbage_tokens_are_invalid_and_the_password_is_asked_again() {
    let server = TestServer::start(auth_config()).await;
    let (mut client, _) = connect_auth(&server).await;
    for garbage in ["", "not a token", &"f".repeat(64), &"é".repeat(500)] {
        expect_error(&mut client, &resume(garbage), ErrorCode::TokenInvalid).await;
        assert!(matches!(client.recv().await, ServerMsg::AskAuth { .. }));
    }
    server.stop().await;
}

#[tokio::test]
async fn tokens_expire_after_seven_idle_days_and_thirty_days_in_all() {
    let clock = ManualClock::at(T0);
    let server = TestServer::start_with_clock(auth_config(), Some(clock.clone())).await;
    let (mut client, _) = connect_auth(&server).await;
    client.send(&register("ann", PASSWORD)).await;
    let ServerMsg::Welcome {
        token, expires_at, ..
    } = client.recv().await
    else {
        panic!("expected welcome")
    };
    assert_eq!(expires_at, T0 + 7 * DAY);

    // Idle for more than seven days: gone.
    clock.advance(7 * DAY);
    let (mut client, _) = connect_auth(&server).await;
    expect_error(
        &mut client,
        &resume(token.expose()),
        ErrorCode::TokenInvalid,
    )
    .await;
    assert!(matches!(client.recv().await, ServerMsg::AskAuth { .. }));

    // Used every six days: alive until thirty days after the login.
    let mut token = expect_welcome(&mut client, &login("ann", PASSWORD), "ann").await;
    let login_time = T0 + 7 * DAY;
    for _ in 0..4 {
        clock.advance(6 * DAY);
        let (mut client, _) = connect_auth(&server).await;
        client.send(&resume(&token)).await;
        let ServerMsg::Welcome {
            token: next,
            expires_at,
            ..
        } = client.recv().await
        else {
            panic!("expected welcome")
        };
        assert!(expires_at <= login_time + 30 * DAY);
        token = next.expose().to_owned();
    }
    clock.advance(6 * DAY);
    let (mut client, _) = connect_auth(&server).await;
    expect_error(&mut client, &resume(&token), ErrorCode::TokenInvalid).await;
    server.stop().await;
}

#[tokio::test]
async fn a_connection_still_open_when_its_session_is_found_expired_is_told_it_expired() {
    let clock = ManualClock::at(T0);
    let server = TestServer::start_with_clock(auth_config(), Some(clock.clone())).await;
    let token = registered(&server, "ann").await;
    let (mut open, _) = connect_auth(&server).await;
    let token = expect_welcome(&mut open, &resume(&token), "ann").await;
    // Seven idle days later, the token is presented again: the chain has
    // expired, and the connection it still holds open ends with it.
    clock.advance(7 * DAY);
    let (mut late, _) = connect_auth(&server).await;
    expect_error(&mut late, &resume(&token), ErrorCode::TokenInvalid).await;
    assert_eq!(
        open.bye_and_cause_within_a_second().await,
        Some((ByeReason::Revoked, Some(ByeCause::Expired)))
    );
    server.stop().await;
}

#[tokio::test]
async fn logout_revokes_the_session() {
    let server = TestServer::start(auth_config()).await;
    let token = registered(&server, "ann").await;
    let (mut client, _) = connect_auth(&server).await;
    let token = expect_welcome(&mut client, &resume(&token), "ann").await;
    client.send(&ClientMsg::Logout {}).await;
    assert_eq!(client.recv().await, ServerMsg::bye(ByeReason::Logout));
    let (mut client, _) = connect_auth(&server).await;
    expect_error(&mut client, &resume(&token), ErrorCode::TokenInvalid).await;
    server.stop().await;
}

#[tokio::test]
async fn messages_out_of_turn_during_authentication_are_fatal() {
    let server = TestServer::start(auth_config()).await;
    let (mut client, _) = connect_auth(&server).await;
    client.say(1, "let me in").await;
    assert!(matches!(
        client.recv().await,
        ServerMsg::Error {
            code: ErrorCode::UnexpectedMessage,
            fatal: true,
            ..
        }
    ));
    server.stop().await;
}

#[tokio::test]
async fn the_store_holds_no_password_and_no_token_in_clear() {
    let server = TestServer::start(auth_config()).await;
    let first = registered(&server, "ann").await;
    let (mut client, _) = connect_auth(&server).await;
    let second = expect_welcome(&mut client, &resume(&first), "ann").await;
    let (mut client, _) = connect_auth(&server).await;
    let third = expect_welcome(&mut client, &login("ann", PASSWORD), "ann").await;
    let dir = server.data.path().to_owned();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        // control.PORT.sock is a socket, not a store file.
        if !entry.file_type().unwrap().is_file() {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        seen += text.len();
        for secret in [PASSWORD, &first, &second, &third] {
            assert!(!text.contains(secret), "a secret is in the store in clear");
        }
        assert!(!text.contains("correct"), "no part of the password either");
    }
    assert!(seen > 0, "the store wrote something");
    server.stop().await;
}
