//! Password limits by source, against a real server ("Hardening III", rows
//! 6 and 7): a source is what the connection caps count (an IPv4 address,
//! an IPv6 /64), and failures from one source never slow an account down
//! from a source it logged in from before.
#![allow(clippy::unwrap_used)]

use echo_proto::{ClientMsg, ErrorCode, Secret, ServerMsg};
use echo_testkit::login;
use echo_testkit::{ManualClock, TestClient, TestServer, auth_config};
use tokio::{io::AsyncWriteExt, net::TcpStream};

use echo_testkit::PASSWORD;
const WRONG: &str = "wrong horse battery";
/// Noon, UTC.
const NOON: u64 = 20_000 * 86_400 + 43_200;

/// Reads `ask_auth`.
async fn asked(mut client: TestClient) -> TestClient {
    assert!(matches!(client.recv().await, ServerMsg::AskAuth { .. }));
    client
}

/// Sends `msg`: the error code it gets, or `None` for `welcome`.
async fn outcome(client: &mut TestClient, msg: &ClientMsg) -> Option<ErrorCode> {
    client.send(msg).await;
    match client.recv().await {
        ServerMsg::Welcome { .. } => None,
        ServerMsg::Error { code, .. } => Some(code),
        other => panic!("expected welcome or error, got {other:?}"),
    }
}

/// A connection from 127.0.0.1 whose PROXY header names `client`.
async fn via_balancer(server: &TestServer, client: &str) -> TestClient {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let header = format!(
        "PROXY TCP6 {client} 2001:db8::ffff 40000 {}\r\n",
        server.addr.port()
    );
    stream.write_all(header.as_bytes()).await.unwrap();
    asked(TestClient::after_hello(stream).await).await
}

/// Row 6: ten addresses of one IPv6 /64 behind a trusted balancer, three
/// attempts a minute, three tries each: three passwords checked in all (the
/// /64 is one source, as for the connection caps). Before: 30.
#[tokio::test]
async fn ten_addresses_of_one_ipv6_64_share_one_password_allowance() {
    let mut config = auth_config();
    config.auth.attempts_per_minute = 3;
    config.listen.proxy_protocol_from = vec!["127.0.0.1/32".parse().unwrap()];
    config.auth.allow_plaintext_auth = true;
    let clock = ManualClock::at(NOON);
    let server = TestServer::start_with_clock(config, Some(clock)).await;
    let (mut checked, mut limited) = (0, 0);
    for i in 1..=10 {
        let mut client = via_balancer(&server, &format!("2001:db8::{i}")).await;
        for _ in 0..3 {
            match outcome(&mut client, &login("nobody", WRONG)).await {
                Some(ErrorCode::InvalidCredentials) => checked += 1,
                Some(ErrorCode::RateLimited) => limited += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!((checked, limited), (3, 27), "passwords checked, refused");
    // Another /64 has its own allowance.
    let mut other = via_balancer(&server, "2001:db8:0:1::1").await;
    let refused = outcome(&mut other, &login("nobody", WRONG)).await;
    assert_eq!(refused, Some(ErrorCode::InvalidCredentials));
    server.stop().await;
}

/// Row 7: 100 wrong passwords for `ann` from 20 addresses (5 each) slow
/// each of those addresses down; `ann` still gets in at once from where she
/// registered, and from a new address. Before: `rate_limited` from the
/// sixth failure on, for everyone, the owner included.
#[tokio::test]
async fn a_spray_from_many_addresses_slows_each_of_them_not_the_owner() {
    let clock = ManualClock::at(NOON);
    let server = TestServer::start_with_clock(auth_config(), Some(clock)).await;
    let mut home = asked(server.connect_from("127.0.0.1").await).await;
    let register = ClientMsg::Register {
        user: "ann".into(),
        password: Secret::new(PASSWORD),
    };
    assert_eq!(outcome(&mut home, &register).await, None);
    let (mut checked, mut limited) = (0, 0);
    for a in 1..=20 {
        let mut client = asked(server.connect_from(&format!("127.0.1.{a}")).await).await;
        for _ in 0..5 {
            match outcome(&mut client, &login("ann", WRONG)).await {
                Some(ErrorCode::InvalidCredentials) => checked += 1,
                Some(ErrorCode::RateLimited) => limited += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!((checked, limited), (100, 0), "passwords checked, refused");
    // Each sprayed address is backing off, even with the right password.
    let mut sprayed = asked(server.connect_from("127.0.1.1").await).await;
    let again = outcome(&mut sprayed, &login("ann", PASSWORD)).await;
    assert_eq!(again, Some(ErrorCode::RateLimited));
    // The owner, from home and from an address never used before.
    for from in ["127.0.0.1", "127.0.2.1"] {
        let mut owner = asked(server.connect_from(from).await).await;
        assert_eq!(
            outcome(&mut owner, &login("ann", PASSWORD)).await,
            None,
            "{from}"
        );
    }
    server.stop().await;
}
