//! The series a fresh server exports: every labelled series whose values
//! are known in advance is there at 0 from the first scrape, the limit and
//! the store's state are exported, histogram bounds read as round numbers,
//! and a connection that closes without a word is a `silent` handshake.
#![allow(clippy::unwrap_used)]

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use echo_proto::ServerMsg;
use echo_testkit::{PASSWORD, TestServer, auth_config, login, register, test_config};
use tokio::{io::AsyncWriteExt, net::TcpStream};

use super::metrics::{get, scrape};

/// Every series whose labels are known in advance, as the contract names
/// them (README.md, "Metrics and health checks").
fn known_series() -> Vec<String> {
    let mut series = Vec::new();
    let mut add = |family: &str, label: &str, values: &[&str]| {
        for value in values {
            series.push(format!("{family}{{{label}=\"{value}\"}}"));
        }
    };
    add(
        "echo_connections_refused_total",
        "reason",
        &["busy", "per_ip"],
    );
    add(
        "echo_handshakes_total",
        "outcome",
        &[
            "greeted",
            "registered",
            "logged_in",
            "resumed",
            "failed",
            "timeout",
            "silent",
        ],
    );
    add(
        "echo_auth_failures_total",
        "reason",
        &[
            "invalid_credentials",
            "invalid_name",
            "name_taken",
            "weak_password",
            "rate_limited",
            "token_invalid",
            "token_reused",
            "unavailable",
            "internal",
        ],
    );
    add(
        "echo_sessions_revoked_total",
        "reason",
        &["reused", "logout"],
    );
    let ops = [
        "identity",
        "remember_identity",
        "familiar_since",
        "note_familiar",
        "user",
        "users",
        "create_user",
        "register",
        "set_password",
        "remove_user",
        "create_session",
        "rotate_session",
        "revoke_session",
        "revoke_user_sessions",
        "sessions",
        "chains_alive",
        "note_visit",
    ];
    add("echo_store_operation_seconds_count", "op", &ops);
    add("echo_store_operation_seconds_sum", "op", &ops);
    series
}

/// Waits until no connection is open, and returns that scrape.
async fn settled(http_addr: SocketAddr) -> HashMap<String, f64> {
    for _ in 0..250 {
        let scraped = scrape(http_addr).await;
        if scraped.get("echo_connections_active") == Some(&0.0) {
            return scraped;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("connections still open");
}

#[tokio::test]
async fn a_fresh_server_exports_every_known_series_at_zero() {
    let mut config = auth_config();
    config.limits.max_connections = 77;
    let (server, http_addr) = TestServer::start_with_metrics(config).await;
    let scraped = scrape(http_addr).await;
    let missing: Vec<String> = known_series()
        .into_iter()
        .filter(|name| scraped.get(name) != Some(&0.0))
        .collect();
    assert!(missing.is_empty(), "not at 0: {missing:?}");
    assert_eq!(scraped.get("echo_connections_max"), Some(&77.0));
    assert_eq!(scraped.get("echo_store_up"), Some(&1.0));
    server.stop().await;
}

#[tokio::test]
async fn histogram_bounds_print_as_round_numbers() {
    let (server, http_addr) = TestServer::start_with_metrics(test_config()).await;
    let (_, body) = get(http_addr, "/metrics").await;
    let bounds: Vec<&str> = body
        .lines()
        .filter(|line| line.contains("_bucket{"))
        .filter_map(|line| line.split("le=\"").nth(1)?.split('"').next())
        .filter(|bound| *bound != "+Inf")
        .collect();
    assert!(!bounds.is_empty(), "{body}");
    for bound in bounds {
        // 1, 2.5 or 5 times a power of ten, written in at most 7 characters.
        let value: f64 = bound.parse().unwrap();
        let mantissa = value / 10f64.powf(value.log10().floor());
        let round = [1.0, 2.5, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-9);
        assert!(round && bound.len() <= 7, "le=\"{bound}\" is not round");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_connection_closed_without_a_word_is_silent_not_failed() {
    let (server, http_addr) = TestServer::start_with_metrics(auth_config()).await;
    let before = scrape(http_addr).await;
    // A port probe: connect, close.
    drop(TcpStream::connect(server.addr).await.unwrap());
    // A client that says half a frame header, then leaves: that one failed.
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(&[0, 0]).await.unwrap();
    drop(half);
    let after = settled(http_addr).await;
    let moved = |name: &str| after.get(name).unwrap_or(&0.0) - before.get(name).unwrap_or(&0.0);
    assert_eq!(moved("echo_connections_total"), 2.0);
    assert_eq!(moved("echo_handshakes_total{outcome=\"silent\"}"), 1.0);
    assert_eq!(moved("echo_handshakes_total{outcome=\"failed\"}"), 1.0);
    server.stop().await;
}

#[tokio::test]
async fn each_answer_to_credentials_is_timed_once() {
    let (server, http_addr) = TestServer::start_with_metrics(auth_config()).await;
    let before = scrape(http_addr).await;
    let (mut client, _) = server.welcomed(register("ann", PASSWORD)).await;
    drop(client);
    client = server.connect_raw().await;
    assert!(matches!(client.recv().await, ServerMsg::AskAuth { .. }));
    client.send(&login("ann", "not the password at all")).await;
    assert!(matches!(client.recv().await, ServerMsg::Error { .. }));
    drop(client);
    let after = settled(http_addr).await;
    let count = "echo_auth_seconds_count";
    assert_eq!(after[count] - before[count], 2.0);
    assert!(after["echo_auth_seconds_sum"] > 0.0);
    server.stop().await;
}
