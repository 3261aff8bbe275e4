//! Admission at accept (#24 rows 1, 2 and 11): a connection is charged to
//! `max_connections` and to its source address before any TLS or PROXY
//! work, so neither a flood of unfinished TLS handshakes nor a balancer that
//! never sends its header can take other addresses' places.
#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use echo_proto::{ClientMsg, ServerMsg, ext::AsyncFrameRead, ext::AsyncFrameWrite};
use echo_testkit::{ServerProcess, connect_from};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{sleep, timeout},
};
use tokio_rustls::{TlsConnector, client::TlsStream};

/// The start of a ClientHello record, and then nothing.
const RECORD_START: [u8; 5] = [0x16, 0x03, 0x01, 0x00, 0x40];

/// A CA-signed pair written into `dir`, and a client that trusts the CA.
fn tls_files(dir: &Path) -> (String, String, TlsConnector) {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let (ca_pem, pairs) = echo_tls::ca_signed(&[names]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    echo_tls::write_pair(&pairs[0], &cert, &key).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    let ca = echo_tls::chain_from_pem(ca_pem.as_bytes(), "ca").unwrap();
    roots.add(ca[0].clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(echo_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    (
        path(&cert),
        path(&key),
        TlsConnector::from(Arc::new(config)),
    )
}

/// A TLS identification-mode server with `extra` arguments.
pub(crate) fn tls_server(dir: &Path, extra: &[&str]) -> (ServerProcess, TlsConnector) {
    let (cert, key, connector) = tls_files(dir);
    let mut args = vec!["--tls", "--tls-cert", &cert, "--tls-key", &key];
    args.extend_from_slice(&["--port", "0", "--mode", "ident"]);
    args.extend_from_slice(extra);
    (ServerProcess::start(dir, &args, &[]), connector)
}

async fn tls_connect(
    connector: &TlsConnector,
    source: &str,
    addr: SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = connect_from(source, addr).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

/// Connects over TLS from `source`, reads `hello` and identifies.
async fn identify_over_tls(connector: &TlsConnector, source: &str, addr: SocketAddr) {
    let mut tls = tls_connect(connector, source, addr).await.unwrap();
    let hello: ServerMsg = tls.recv_msg().await.unwrap().unwrap();
    assert!(matches!(hello, ServerMsg::Hello { .. }), "{hello:?}");
    let asked: ServerMsg = tls.recv_msg().await.unwrap().unwrap();
    assert_eq!(asked, ServerMsg::AskName {});
    let name = ClientMsg::Name {
        name: "Neighbour".into(),
    };
    tls.send_msg(&name).await.unwrap();
    let greet: ServerMsg = tls.recv_msg().await.unwrap().unwrap();
    assert!(matches!(greet, ServerMsg::Greet { .. }), "{greet:?}");
}

/// Whether the server has closed `stream` (reads to its end or a reset).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match timeout(Duration::from_millis(20), stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Waits (at most `limit`) until process `pid`'s RSS is under `kib`; the
/// caller asserts on the RSS it then reads.
async fn settled_below(pid: u32, kib: u64, limit: Duration) {
    echo_testkit::wait_until_async(limit, || async move { echo_testkit::rss_kib(pid) < kib }).await;
}

/// How many of `streams` the server still holds open.
async fn still_open(streams: &mut [TcpStream]) -> usize {
    let mut open = 0;
    for stream in streams {
        open += usize::from(!closed(stream).await);
    }
    open
}

/// Waits (up to `limit`) until the server has closed every one of
/// `streams`; how long that took.
async fn all_closed_within(streams: &mut [TcpStream], limit: Duration) -> Duration {
    let started = Instant::now();
    while still_open(streams).await > 0 {
        assert!(started.elapsed() < limit, "still open after {limit:?}");
        sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn a_tls_flood_from_one_address_takes_only_its_own_handshake_places() {
    let dir = tempfile::tempdir().unwrap();
    let extra = [
        "--max-connections",
        "64",
        "--max-handshakes-per-ip",
        "8",
        "--tls-handshake-timeout",
        "1",
    ];
    let (server, connector) = tls_server(dir.path(), &extra);
    let addr = server.addr();
    let mut flood = Vec::new();
    for _ in 0..100 {
        let mut tcp = connect_from("127.0.0.2", addr).await;
        tcp.write_all(&RECORD_START).await.unwrap();
        flood.push(tcp);
    }
    sleep(Duration::from_millis(300)).await;
    let held = still_open(&mut flood).await;
    assert_eq!(held, 8, "the flooding address holds its 8 handshake places");
    // Another address logs in meanwhile.
    identify_over_tls(&connector, "127.0.0.1", addr).await;
    // The held handshakes end at the TLS deadline, not the handshake's 30 s.
    let took = all_closed_within(&mut flood, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
}

/// The server's open file descriptors.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_connection_limit_a_tls_connection_is_closed_at_accept() {
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--max-connections", "4", "--max-handshakes-per-ip", "64"];
    let (server, connector) = tls_server(dir.path(), &extra);
    let (addr, pid) = (server.addr(), server.child.id());
    let mut holding = Vec::new();
    for _ in 0..4 {
        let mut tcp = connect_from("127.0.0.3", addr).await;
        tcp.write_all(&RECORD_START).await.unwrap();
        holding.push(tcp);
    }
    sleep(Duration::from_millis(200)).await;
    // No TLS handshake for the fifth: it is closed before its ClientHello.
    let refused = tls_connect(&connector, "127.0.0.4", addr).await;
    assert!(refused.is_err(), "a TLS handshake was made over the limit");

    // A flood of partial 16 KiB ClientHellos from many addresses.
    let (rss_start, fds_start) = (echo_testkit::rss_kib(pid), fds(pid));
    let mut hello = vec![0x16, 0x03, 0x01, 0x40, 0x00];
    hello.resize(16 * 1024, 0x42);
    let (mut peak_rss, mut peak_fds, mut flood) = (rss_start, fds_start, Vec::new());
    let started = Instant::now();
    for n in 0..4_000u32 {
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
        let source = format!("127.0.1.{}", 1 + n % 250);
        let mut tcp = connect_from(&source, addr).await;
        let _ = tcp.write_all(&hello).await;
        flood.push(tcp);
        if n % 100 == 0 {
            peak_rss = peak_rss.max(echo_testkit::rss_kib(pid));
            peak_fds = peak_fds.max(fds(pid));
        }
    }
    let sent = flood.len();
    drop(flood);
    // Freed memory goes back to the system (the trimmer runs every 2 s):
    // waited for, within 10 s.
    settled_below(pid, rss_start + 32 * 1024, Duration::from_secs(10)).await;
    let rss_after = echo_testkit::rss_kib(pid);
    eprintln!(
        "{sent} connections: RSS {rss_start} -> peak {peak_rss} -> {rss_after} KiB; fds {fds_start} -> peak {peak_fds}"
    );
    assert!(sent >= 500, "only {sent} connections made");
    assert!(peak_fds <= fds_start + 16, "fds {fds_start} -> {peak_fds}");
    assert!(
        peak_rss - rss_start < 64 * 1024,
        "RSS grew {peak_rss} - {rss_start} KiB"
    );
    assert!(rss_after.saturating_sub(rss_start) < 32 * 1024);
    // The held ones are still being served; a freed place is taken.
    drop(holding);
    sleep(Duration::from_millis(300)).await;
    identify_over_tls(&connector, "127.0.0.1", addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_client_hellos_from_a_thousand_addresses_stay_within_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (server, connector) = tls_server(dir.path(), &["--tls-handshake-timeout", "3"]);
    let (addr, pid) = (server.addr(), server.child.id());
    let rss_start = echo_testkit::rss_kib(pid);
    // 60 KiB of a ClientHello each, in 16 KiB records, from 1,000
    // addresses (the default limits: 1,024 connections, 32 handshakes an
    // address); rustls alone would buffer all of it.
    let mut hello = Vec::new();
    for record in 0..4 {
        hello.extend_from_slice(&[0x16, 0x03, 0x01, 0x3c, 0x00]);
        let body = hello.len();
        hello.resize(body + 0x3c00, 0x42);
        if record == 0 {
            // A ClientHello message of 60 KiB, announced in its header.
            hello[body..body + 4].copy_from_slice(&[0x01, 0x00, 0xf0, 0x00]);
        }
    }
    let mut flood = Vec::new();
    let mut peak = rss_start;
    for n in 0..1_000u32 {
        let source = format!("127.0.{}.{}", 2 + n / 250, 1 + n % 250);
        let mut tcp = connect_from(&source, addr).await;
        let _ = timeout(Duration::from_millis(200), tcp.write_all(&hello)).await;
        flood.push(tcp);
        if n % 50 == 0 {
            peak = peak.max(echo_testkit::rss_kib(pid));
        }
    }
    sleep(Duration::from_millis(500)).await;
    peak = peak.max(echo_testkit::rss_kib(pid));
    drop(flood);
    // The trimmer runs every 2 s once 256 connections have ended: waited
    // for, within 10 s.
    settled_below(pid, rss_start + 32 * 1024, Duration::from_secs(10)).await;
    let after = echo_testkit::rss_kib(pid);
    eprintln!("RSS {rss_start} -> peak {peak} -> {after} KiB");
    assert!(
        peak - rss_start < 64 * 1024,
        "RSS grew {} KiB",
        peak - rss_start
    );
    assert!(
        after.saturating_sub(rss_start) < 32 * 1024,
        "after: {after}"
    );
    identify_over_tls(&connector, "127.0.0.1", addr).await;
}

#[tokio::test]
async fn a_flood_of_failed_tls_steps_writes_one_log_line_per_ten_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, _) = tls_server(dir.path(), &[]);
    let addr = server.addr();
    for n in 0..300u32 {
        let source = format!("127.0.3.{}", 1 + n % 250);
        let mut tcp = connect_from(&source, addr).await;
        // Not a TLS record: the server sends an alert and closes.
        tcp.write_all(b"\0\0\0\x02{}").await.unwrap();
        assert!(
            timeout(Duration::from_secs(5), closed(&mut tcp))
                .await
                .is_ok()
        );
    }
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let log = echo_testkit::read_logs(dir.path());
    let lines = log.matches("closed before the first frame").count();
    assert!((1..=2).contains(&lines), "{lines} lines for 300 failures");
}

#[tokio::test]
async fn a_balancer_that_sends_no_header_is_charged_to_its_address_and_cut_at_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--port",
        "0",
        "--mode",
        "ident",
        "--proxy-protocol-from",
        "127.0.0.1/32",
        "--max-connections",
        "20",
        "--max-connections-per-ip",
        "10",
    ];
    let server = ServerProcess::start(dir.path(), &args, &[]);
    let addr = server.addr();
    let mut silent = Vec::new();
    for _ in 0..25 {
        silent.push(connect_from("127.0.0.1", addr).await);
    }
    sleep(Duration::from_millis(300)).await;
    assert_eq!(still_open(&mut silent).await, 10, "the balancer's cap");
    // A client straight from another address is served meanwhile.
    let tcp = connect_from("127.0.0.5", addr).await;
    let mut client = echo_testkit::TestClient::after_hello(tcp).await;
    assert_eq!(
        client.identify("Direct").await,
        ("Direct".to_owned(), false)
    );
    // The silent ones are closed at the header's deadline.
    let took = all_closed_within(&mut silent, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    // And a header that does come names its client, charged to it.
    let mut through = connect_from("127.0.0.1", addr).await;
    let port = addr.port();
    let header = format!("PROXY TCP4 127.0.0.6 127.0.0.1 40000 {port}\r\n");
    through.write_all(header.as_bytes()).await.unwrap();
    let mut client = echo_testkit::TestClient::after_hello(through).await;
    assert_eq!(client.identify("Six").await, ("Six".to_owned(), false));
}

#[tokio::test]
async fn over_tls_a_balancers_header_moves_the_charge_to_the_client_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let extra = [
        "--proxy-protocol-from",
        "127.0.0.1/32",
        "--max-connections-per-ip",
        "1",
    ];
    let (server, connector) = tls_server(dir.path(), &extra);
    let addr = server.addr();
    let name = || rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let through = |client: &'static str| async move {
        let mut tcp = connect_from("127.0.0.1", addr).await;
        let header = format!("PROXY TCP4 {client} 127.0.0.1 40000 {}\r\n", addr.port());
        tcp.write_all(header.as_bytes()).await.unwrap();
        tcp
    };
    // Two clients behind the one balancer, each its own source: the
    // balancer's own cap of 1 holds only while a header is awaited.
    let mut first = connector
        .connect(name(), through("127.0.0.7").await)
        .await
        .unwrap();
    let mut second = connector
        .connect(name(), through("127.0.0.8").await)
        .await
        .unwrap();
    for tls in [&mut first, &mut second] {
        let hello: ServerMsg = tls.recv_msg().await.unwrap().unwrap();
        assert!(matches!(hello, ServerMsg::Hello { .. }), "{hello:?}");
    }
    // A second connection for 127.0.0.7 is over its cap: closed before TLS.
    let refused = connector.connect(name(), through("127.0.0.7").await).await;
    assert!(refused.is_err(), "served over the client's cap");
}
