//! `--metrics-addr`: the Prometheus metrics move by exactly the traffic,
//! `/healthz` follows the server's state, and the HTTP port holds up to bad
//! clients without touching the main port.
#![allow(clippy::unwrap_used)]

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use echo_proto::{ClientMsg, ErrorCode, Secret, ServerMsg, ext::AsyncFrameWrite};
use echo_testkit::{TestClient, TestServer, auth_config, test_config};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use echo_testkit::PASSWORD;

/// One HTTP/1.1 request; the status code and the body.
async fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

pub(crate) async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// Every sample of a scrape, by its name and labels as written.
pub(crate) async fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(name, value)| Some((name.to_owned(), value.parse().ok()?)))
        .collect()
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, name: &str) -> f64 {
    after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
}

/// A client that counts the bytes of every frame it sends and receives.
struct Counted {
    client: TestClient,
    sent: usize,
    received: usize,
}

impl Counted {
    async fn connect(server: &TestServer) -> Self {
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let mut counted = Self {
            client: TestClient { stream },
            sent: 0,
            received: 0,
        };
        assert!(matches!(counted.recv().await, ServerMsg::Hello { .. }));
        counted
    }

    async fn send(&mut self, msg: &ClientMsg) {
        self.sent += 4 + serde_json::to_vec(msg).unwrap().len();
        self.client.stream.send_msg(msg).await.unwrap();
    }

    async fn recv(&mut self) -> ServerMsg {
        let msg = self.client.recv().await;
        self.received += 4 + serde_json::to_vec(&msg).unwrap().len();
        msg
    }
}

#[tokio::test]
async fn the_counters_move_by_exactly_the_traffic() {
    let (server, http_addr) = TestServer::start_with_metrics(auth_config()).await;
    let before = scrape(http_addr).await;
    let (mut sent, mut received) = (0, 0);

    // A registration, three plain says and a /repeat of two.
    let mut first = Counted::connect(&server).await;
    assert!(matches!(first.recv().await, ServerMsg::AskAuth { .. }));
    let register = ClientMsg::Register {
        user: "ann".into(),
        password: Secret::new(PASSWORD),
    };
    first.send(&register).await;
    assert!(matches!(first.recv().await, ServerMsg::Welcome { .. }));
    for (id, text) in [(1, "one"), (2, "two"), (3, "three"), (4, "/repeat 2 again")] {
        let say = ClientMsg::Say {
            id,
            text: text.into(),
        };
        first.send(&say).await;
        loop {
            if let ServerMsg::Reply { last: true, .. } = first.recv().await {
                break;
            }
        }
    }
    // A wrong password, then the right one, then one say.
    let mut second = Counted::connect(&server).await;
    assert!(matches!(second.recv().await, ServerMsg::AskAuth { .. }));
    for password in ["wrong horse battery", PASSWORD] {
        let login = ClientMsg::Login {
            user: "ann".into(),
            password: Secret::new(password),
        };
        second.send(&login).await;
        second.recv().await;
    }
    second
        .send(&ClientMsg::Say {
            id: 1,
            text: "hi".into(),
        })
        .await;
    second.recv().await;
    // A token nobody knows, then the client leaves mid-handshake.
    let mut third = Counted::connect(&server).await;
    assert!(matches!(third.recv().await, ServerMsg::AskAuth { .. }));
    third
        .send(&ClientMsg::Resume {
            token: Secret::new("00"),
        })
        .await;
    assert!(matches!(
        third.recv().await,
        ServerMsg::Error {
            code: ErrorCode::TokenInvalid,
            ..
        }
    ));
    assert!(matches!(third.recv().await, ServerMsg::AskAuth { .. }));
    for counted in [first, second, third] {
        sent += counted.sent;
        received += counted.received;
    }

    // Connections publish their counts when they end.
    let mut after = scrape(http_addr).await;
    for _ in 0..100 {
        if after.get("echo_connections_active") == Some(&0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = scrape(http_addr).await;
    }
    let moved = |name: &str| delta(&before, &after, name);
    assert_eq!(after.get("echo_connections_active"), Some(&0.0));
    assert_eq!(moved("echo_connections_total"), 3.0);
    assert_eq!(moved("echo_handshakes_total{outcome=\"registered\"}"), 1.0);
    assert_eq!(moved("echo_handshakes_total{outcome=\"logged_in\"}"), 1.0);
    assert_eq!(moved("echo_handshakes_total{outcome=\"failed\"}"), 1.0);
    assert_eq!(
        moved("echo_auth_failures_total{reason=\"invalid_credentials\"}"),
        1.0
    );
    assert_eq!(
        moved("echo_auth_failures_total{reason=\"token_invalid\"}"),
        1.0
    );
    assert_eq!(moved("echo_messages_total"), 5.0);
    assert_eq!(moved("echo_replies_total"), 6.0);
    assert_eq!(moved("echo_bytes_received_total"), sent as f64);
    assert_eq!(moved("echo_bytes_sent_total"), received as f64);
    assert_eq!(moved("echo_password_hash_seconds_count"), 3.0);
    assert!(moved("echo_store_operation_seconds_count{op=\"register\"}") == 1.0);
    assert!(
        after
            .keys()
            .any(|name| name.starts_with("echo_build_info{version="))
    );
    server.stop().await;
}

#[tokio::test]
async fn stats_reads_the_same_counters() {
    let (server, http_addr) = TestServer::start_with_metrics(test_config()).await;
    let mut client = server.connect().await;
    let stats = client.ask(1, "/stats").await;
    let scraped = scrape(http_addr).await;
    assert_eq!(
        stats[2],
        format!("messages served: {}", scraped["echo_messages_total"])
    );
    assert!(stats[1].starts_with(&format!(
        "connections now: {} (since start: {})",
        scraped["echo_connections_active"], scraped["echo_connections_total"]
    )));
    server.stop().await;
}

#[tokio::test]
async fn healthz_is_ok_while_serving_and_503_while_draining() {
    let (server, http_addr) = TestServer::start_with_metrics(test_config()).await;
    assert_eq!(get(http_addr, "/healthz").await, (200, "ok".to_owned()));
    // A client that does not close keeps the drain going for a moment.
    let mut client = server.connect().await;
    server.shutdown.cancel();
    let (status, body) = get(http_addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (503, "draining"));
    assert!(matches!(client.recv().await, ServerMsg::Bye { .. }));
    server.task.await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_their_status_and_the_main_port_goes_on() {
    let (server, http_addr) = TestServer::start_with_metrics(test_config()).await;
    let mut client = server.connect().await;
    assert_eq!(get(http_addr, "/nope").await.0, 404);
    let post =
        "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(http(http_addr, post).await.0, 405);
    let head = "HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    assert_eq!(http(http_addr, head).await, (200, String::new()));
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(9 * 1024)
    );
    assert_eq!(http(http_addr, &huge).await.0, 431);
    // A request head that never ends is dropped after the idle timeout (5 s;
    // the attacks on this port are in metrics_port.rs).
    let mut slow = TcpStream::connect(http_addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(8), slow.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "a slow request head was kept open");
    // The main port answered all along.
    assert_eq!(client.ask(1, "still here").await, ["still here"]);
    server.stop().await;
}
