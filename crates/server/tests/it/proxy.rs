//! The PROXY protocol: a trusted balancer's header names the client
//! everywhere; anyone else's header is refused.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use echo_proto::{ClientMsg, ServerMsg, ext::AsyncFrameRead};
use echo_server::ServerConfig;
use echo_testkit::{TestClient, TestServer, test_config};
use tokio::{io::AsyncWriteExt, net::TcpStream};

/// Connects from 127.0.0.1 and sends `header` before anything else.
async fn through_balancer(server: &TestServer, header: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(header).await.unwrap();
    stream
}

fn v1(client: &str, server: &TestServer) -> Vec<u8> {
    let (ip, port) = client.split_once(':').unwrap();
    format!(
        "PROXY TCP4 {ip} 127.0.0.1 {port} {}\r\n",
        server.addr.port()
    )
    .into_bytes()
}

fn trusting_loopback() -> ServerConfig {
    let mut config = test_config();
    config.listen.proxy_protocol_from = vec!["127.0.0.1/32".parse().unwrap()];
    config
}

#[tokio::test]
async fn the_client_named_by_a_trusted_balancer_is_identified_by_its_own_address() {
    let server = TestServer::start(trusting_loopback()).await;
    let stream = through_balancer(&server, &v1("127.0.0.5:51000", &server)).await;
    let mut client = TestClient::after_hello(stream).await;
    assert_eq!(client.identify("Five").await, ("Five".to_owned(), false));
    let whoami = client.ask(1, "/whoami").await;
    assert!(
        whoami[0].contains("connected from 127.0.0.5:51000 via 127.0.0.1:"),
        "{whoami:?}"
    );
    // Next time, whichever port the balancer uses, the address is known.
    let stream = through_balancer(&server, &v1("127.0.0.5:51001", &server)).await;
    let mut again = TestClient::after_hello(stream).await;
    assert_eq!(again.identify("ignored").await, ("Five".to_owned(), true));
    // Another client behind the same balancer is someone else.
    let stream = through_balancer(&server, &v1("127.0.0.6:51002", &server)).await;
    let mut other = TestClient::after_hello(stream).await;
    assert_eq!(other.recv().await, ServerMsg::AskName {});
    // A v2 LOCAL header (a health check) keeps the balancer's address.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\0\x00";
    let stream = through_balancer(&server, local).await;
    let mut check = TestClient::after_hello(stream).await;
    check.identify("balancer").await;
    let whoami = check.ask(1, "/whoami").await;
    assert!(
        whoami[0].contains("connected from 127.0.0.1:"),
        "{whoami:?}"
    );
    assert!(!whoami[0].contains(" via "), "{whoami:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_trusted_balancer_without_a_header_is_closed() {
    let server = TestServer::start(trusting_loopback()).await;
    let name = serde_json::to_vec(&ClientMsg::Name { name: "x".into() }).unwrap();
    let mut frame = (name.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&name);
    let mut stream = through_balancer(&server, &frame).await;
    let first = tokio::time::timeout(Duration::from_secs(5), stream.recv_frame()).await;
    assert!(matches!(first, Ok(Ok(None)) | Ok(Err(_))), "{first:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_proxy_header_from_an_untrusted_address_is_refused() {
    let server = TestServer::start(test_config()).await;
    let mut stream = through_balancer(&server, &v1("127.0.0.9:1", &server)).await;
    // Closed without an answer: the header is not read as a huge frame
    // (`frame_too_large`). What was sent before may be lost to the reset.
    let mut frames = Vec::new();
    let read_all = async {
        while let Ok(Some(frame)) = stream.recv_msg::<ServerMsg>().await {
            frames.push(frame);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read_all)
        .await
        .unwrap();
    assert!(
        frames.iter().all(|f| !matches!(f, ServerMsg::Error { .. })),
        "{frames:?}"
    );
    server.stop().await;
}
