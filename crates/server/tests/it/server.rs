//! The server library against real sockets on loopback.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use echo_proto::{ByeReason, ClientMsg, ErrorCode, ServerMsg, ext::AsyncFrameWrite};
use echo_testkit::{TestServer, test_config};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn plain_text_is_echoed_in_one_reply() {
    let server = TestServer::start(test_config()).await;
    let mut client = server.connect().await;
    assert_eq!(client.ask(1, "hello, world").await, vec!["hello, world"]);
    assert_eq!(client.ask(2, "привет").await, vec!["привет"]);
    server.stop().await;
}

#[tokio::test]
async fn repeat_four_gives_four_replies_with_the_last_marked() {
    let server = TestServer::start(test_config()).await;
    let mut client = server.connect().await;
    client.say(7, "/repeat 4 x").await;
    let mut lasts = Vec::new();
    for _ in 0..4 {
        match client.recv().await {
            ServerMsg::Reply { re: 7, text, last } => {
                assert_eq!(text, "x");
                lasts.push(last);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(lasts, [false, false, false, true]);
    // The conversation goes on after the burst.
    assert_eq!(client.ask(8, "after").await, vec!["after"]);
    server.stop().await;
}

#[tokio::test]
async fn help_whoami_and_stats_answer() {
    let server = TestServer::start(test_config()).await;
    let mut client = server.connect().await;
    let help = client.ask(1, "/help").await;
    assert_eq!(help.len(), 4);
    assert!(help.iter().any(|line| line.starts_with("/repeat N TEXT")));
    let whoami = client.ask(2, "/whoami").await;
    let local = client.stream.local_addr().unwrap().to_string();
    assert!(whoami[0].contains(&local), "{whoami:?}");
    assert!(whoami[0].starts_with("you are tester"), "{whoami:?}");
    let stats = client.ask(3, "/stats").await;
    assert_eq!(stats.len(), 3);
    assert!(stats[1].starts_with("connections now: 1"), "{stats:?}");
    assert_eq!(stats[2], "messages served: 3");
    server.stop().await;
}

#[tokio::test]
async fn bad_commands_get_an_error_and_the_session_goes_on() {
    let server = TestServer::start(test_config()).await;
    let mut client = server.connect().await;
    client.say(1, "/dance").await;
    assert!(matches!(
        client.recv().await,
        ServerMsg::Error {
            code: ErrorCode::UnknownCommand,
            fatal: false,
            ..
        }
    ));
    client.say(2, "/repeat 1000 x").await;
    assert!(matches!(
        client.recv().await,
        ServerMsg::Error {
            code: ErrorCode::BadCommand,
            fatal: false,
            ..
        }
    ));
    assert_eq!(client.ask(3, "still here").await, vec!["still here"]);
    server.stop().await;
}

#[tokio::test]
async fn malformed_messages_get_an_error_and_the_session_goes_on() {
    let server = TestServer::start(test_config()).await;
    let mut client = server.connect().await;
    for (payload, code) in [
        (&b"not json"[..], ErrorCode::BadJson),
        (&b"[1,2]"[..], ErrorCode::BadJson),
        (&b""[..], ErrorCode::BadJson),
        (&b"{\"type\":\"dance\"}"[..], ErrorCode::UnknownType),
        (&b"{\"type\":\"say\",\"id\":1}"[..], ErrorCode::BadField),
        (
            &b"{\"type\":\"say\",\"id\":\"one\",\"text\":\"x\"}"[..],
            ErrorCode::BadField,
        ),
        (&[0xff, 0xfe][..], ErrorCode::InvalidUtf8),
    ] {
        client.stream.send_frame(payload).await.unwrap();
        match client.recv().await {
            ServerMsg::Error {
                code: got,
                fatal: false,
                ..
            } => assert_eq!(got, code),
            other => panic!("expected {code:?}, got {other:?}"),
        }
    }
    assert_eq!(client.ask(1, "fine").await, vec!["fine"]);
    server.stop().await;
}

#[tokio::test]
async fn oversized_frame_is_fatal_and_the_server_keeps_serving() {
    let server = TestServer::start(test_config()).await;
    let mut bystander = server.connect().await;
    let mut client = server.connect().await;
    client
        .stream
        .write_all(&u32::MAX.to_be_bytes())
        .await
        .unwrap();
    assert!(matches!(
        client.recv().await,
        ServerMsg::Error {
            code: ErrorCode::FrameTooLarge,
            fatal: true,
            ..
        }
    ));
    assert!(client.try_recv().await.is_none());
    assert_eq!(bystander.ask(1, "unaffected").await, vec!["unaffected"]);
    server.stop().await;
}

#[tokio::test]
async fn logout_is_answered_with_bye() {
    let server = TestServer::start(test_config()).await;
    let mut client = server.connect().await;
    client.send(&ClientMsg::Logout {}).await;
    assert_eq!(client.recv().await, ServerMsg::bye(ByeReason::Logout));
    assert!(client.try_recv().await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn the_same_client_leaves_abruptly_and_comes_back_many_times() {
    let server = TestServer::start(test_config()).await;
    for round in 0..5u64 {
        let mut client = server.connect().await;
        assert_eq!(client.ask(round, "ping").await, vec!["ping"]);
        match round % 3 {
            // Vanish in the middle of a frame.
            0 => client.stream.write_all(&[0, 0, 0, 50, b'{']).await.unwrap(),
            // Reset the connection.
            1 => client.stream.set_zero_linger().unwrap(),
            // Leave cleanly.
            _ => client.stream.shutdown().await.unwrap(),
        }
        drop(client);
    }
    let mut client = server.connect().await;
    assert_eq!(client.ask(99, "back").await, vec!["back"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_at_once_each_get_their_own_replies() {
    let server = TestServer::start(test_config()).await;
    let mut tasks = Vec::new();
    for n in 0..50u64 {
        let mut client = server.connect().await;
        tasks.push(tokio::spawn(async move {
            for i in 0..20u64 {
                let text = format!("client {n} message {i}");
                assert_eq!(client.ask(i, &text).await, vec![text]);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_with_server_busy() {
    let mut config = test_config();
    config.limits.max_connections = 2;
    let server = TestServer::start(config).await;
    let mut first = server.connect().await;
    let _second = server.connect().await;
    let mut third = server.connect_raw().await;
    assert!(matches!(
        third.recv().await,
        ServerMsg::Error {
            code: ErrorCode::ServerBusy,
            fatal: true,
            ..
        }
    ));
    assert!(third.try_recv().await.is_none());
    // A slot freed is a slot for the next client.
    first.stream.shutdown().await.unwrap();
    assert!(first.try_recv().await.is_none());
    let mut fourth = loop {
        let mut client = server.connect_raw().await;
        match client.recv().await {
            ServerMsg::Error {
                code: ErrorCode::ServerBusy,
                ..
            } => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ServerMsg::Greet { .. } => break client,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(fourth.ask(2, "yes").await, vec!["yes"]);
    server.stop().await;
}
