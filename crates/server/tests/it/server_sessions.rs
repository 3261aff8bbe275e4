//! The server library on loopback: timeouts, shutdown, the handshake's
//! limits, and texts and pipelined messages coming back unchanged.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use echo_proto::{ByeReason, ClientMsg, ErrorCode, ServerMsg, ext::AsyncFrameWrite};
use echo_testkit::{TestServer, test_config};
use tokio::{io::AsyncWriteExt, net::TcpStream, time::Instant};

// These timeout tests run on the real clock, with short timeouts: the
// store's reads and writes are answered by threads of its own, and a
// paused clock would jump to the next deadline while a task waits for one.
#[tokio::test]
async fn a_silent_session_is_closed_by_the_idle_timeout() {
    let mut config = test_config();
    config.timeouts.idle = Duration::from_secs(1);
    let server = TestServer::start(config).await;
    let mut client = server.connect().await;
    let started = Instant::now();
    assert_eq!(client.recv().await, ServerMsg::bye(ByeReason::Timeout));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(client.try_recv().await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn shutdown_says_bye_to_every_client_and_returns() {
    let server = TestServer::start(test_config()).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(server.connect().await);
    }
    clients[0].say(1, "/stats").await;
    for _ in 0..3 {
        assert!(matches!(clients[0].recv().await, ServerMsg::Reply { .. }));
    }
    server.shutdown.cancel();
    for client in &mut clients {
        assert_eq!(client.recv().await, ServerMsg::bye(ByeReason::Shutdown));
        assert!(client.try_recv().await.is_none());
    }
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .expect("run returns after the drain")
        .unwrap();
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "still listening"
    );
}

#[tokio::test]
async fn a_silent_client_is_dropped_by_the_handshake_timeout() {
    let (server, mut client) = TestServer::asked_for_a_name(Duration::from_secs(1)).await;
    let started = Instant::now();
    assert_eq!(client.recv().await, ServerMsg::bye(ByeReason::Timeout));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(
        started.elapsed() < test_config().timeouts.idle,
        "not the idle timeout"
    );
    assert!(client.try_recv().await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn the_handshake_deadline_holds_however_often_the_client_answers_badly() {
    let (server, mut client) = TestServer::asked_for_a_name(Duration::from_secs(2)).await;
    let started = Instant::now();
    // A bad answer every 200 ms: a deadline each answer moved would never
    // come within the 40 answers (8 s).
    let mut timed_out = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        client
            .send(&ClientMsg::Name {
                name: String::new(),
            })
            .await;
        match client.recv().await {
            ServerMsg::Error {
                code: ErrorCode::InvalidName,
                ..
            } => {
                assert_eq!(client.recv().await, ServerMsg::AskName {});
            }
            ServerMsg::Bye {
                reason: ByeReason::Timeout,
                ..
            } => {
                timed_out = true;
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(timed_out, "no bye after {:?}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_millis(1900));
    server.stop().await;
}

#[tokio::test]
async fn say_before_the_handshake_is_a_fatal_protocol_violation() {
    let server = TestServer::start(test_config()).await;
    let mut client = server.connect_raw().await;
    assert_eq!(client.recv().await, ServerMsg::AskName {});
    client.say(1, "too early").await;
    assert!(matches!(
        client.recv().await,
        ServerMsg::Error {
            code: ErrorCode::UnexpectedMessage,
            fatal: true,
            ..
        }
    ));
    assert!(client.try_recv().await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn frames_over_the_handshake_limit_are_refused_before_authentication() {
    let server = TestServer::start(test_config()).await;
    let mut client = server.connect_raw().await;
    assert_eq!(client.recv().await, ServerMsg::AskName {});
    let big = format!("{{\"type\":\"name\",\"name\":\"{}\"}}", "x".repeat(5000));
    client.stream.send_frame(big.as_bytes()).await.unwrap();
    assert!(matches!(
        client.recv().await,
        ServerMsg::Error {
            code: ErrorCode::FrameTooLarge,
            fatal: true,
            ..
        }
    ));
    // After the handshake the larger limit applies.
    let mut client = server.connect().await;
    let text = "y".repeat(30_000);
    assert_eq!(client.ask(1, &text).await, vec![text]);
    server.stop().await;
}

#[tokio::test]
async fn escaped_and_unicode_texts_come_back_the_same() {
    let server = TestServer::start(test_config()).await;
    let mut client = server.connect().await;
    for text in [
        "tab\tquote\"backslash\\slash/",
        "\u{1}control\u{1f}",
        "é, я, 😀",
        "\"starts with a quote",
        "\\starts with a backslash",
        "",
    ] {
        assert_eq!(client.ask(1, text).await, vec![text.to_owned()]);
    }
    server.stop().await;
}

#[tokio::test]
async fn pipelined_messages_are_answered_in_order() {
    let server = TestServer::start(test_config()).await;
    let mut client = server.connect().await;
    let mut batch = Vec::new();
    let texts: Vec<String> = (0..30)
        .map(|i| {
            if i % 7 == 3 {
                "/repeat 2 r".to_owned()
            } else {
                format!("m{i}")
            }
        })
        .collect();
    for (id, text) in texts.iter().enumerate() {
        let msg = ClientMsg::Say {
            id: id as u64,
            text: text.clone(),
        };
        let json = serde_json::to_vec(&msg).unwrap();
        batch.extend_from_slice(&(json.len() as u32).to_be_bytes());
        batch.extend_from_slice(&json);
    }
    // All thirty in one write.
    client.stream.write_all(&batch).await.unwrap();
    for (id, text) in texts.iter().enumerate() {
        let expected = if text.starts_with('/') { 2 } else { 1 };
        for n in 0..expected {
            match client.recv().await {
                ServerMsg::Reply {
                    re,
                    text: got,
                    last,
                } => {
                    assert_eq!(re, id as u64);
                    assert_eq!(last, n + 1 == expected);
                    if expected == 1 {
                        assert_eq!(&got, text);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    server.stop().await;
}
