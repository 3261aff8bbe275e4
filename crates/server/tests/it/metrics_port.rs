//! The metrics port (`--metrics-addr`) under attack, black-box on the
//! binary: `/healthz` is answered within a second whatever other clients
//! hold, idle and slow connections are closed, every request has a
//! deadline, `CONNECT` is refused at once (docs/RELIABILITY.md, Hardening
//! III).
#![allow(clippy::unwrap_used)]

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use echo_testkit::{ServerProcess, free_port, read_logs};

/// The server binary with its metrics port on `host`; `extra` flags.
fn start(dir: &Path, host: &str, extra: &[&str]) -> (ServerProcess, SocketAddr) {
    let metrics = format!("{host}:{}", free_port());
    let mut args = vec!["--port", "0", "--mode", "ident", "--metrics-addr", &metrics];
    args.extend_from_slice(extra);
    let server = ServerProcess::start(dir, &args, &[]);
    assert!(
        server.first_line.starts_with("listening on"),
        "did not start"
    );
    let port = metrics.rsplit_once(':').unwrap().1.parse().unwrap();
    (server, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Sends `request` on a new connection and reads the whole answer, for at
/// most `limit`.
fn ask(addr: SocketAddr, request: &str, limit: Duration) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, limit).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// `GET /healthz` on a new connection: how long the `200 ok` took.
fn healthz(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let request = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let answer = ask(addr, request, Duration::from_secs(3));
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
        "{answer:?}"
    );
    started.elapsed()
}

/// Whether the server closes `stream` within `limit`: the bytes read
/// until it did, or `None`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<usize> {
    let deadline = Instant::now() + limit;
    let mut buffer = [0u8; 64 * 1024];
    let mut received = 0;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => return Some(received),
            Ok(read) => received += read,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(received),
        }
    }
    None
}

/// Connections that send nothing.
fn silent(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect()
}

/// Connections that asked for `/healthz`, read the answer and stay open.
fn kept_alive(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            let mut answer = Vec::new();
            let mut buffer = [0u8; 1024];
            while !answer.ends_with(b"ok") {
                let read = stream.read(&mut buffer).unwrap();
                assert!(read > 0, "closed before its answer");
                answer.extend_from_slice(&buffer[..read]);
            }
            stream
        })
        .collect()
}

#[test]
fn healthz_is_answered_within_a_second_while_attackers_hold_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start(dir.path(), "127.0.0.1", &[]);
    let mut held = kept_alive(addr, 100);
    let mut slow = silent(addr, 200);
    for stream in &mut slow {
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            .unwrap();
    }
    held.extend(silent(addr, 2_000));
    // The slow heads go on, a byte each every 200 ms.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickle = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            for _ in 0..100 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                for stream in &mut slow {
                    let _ = stream.write_all(b"x");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        // The attacker keeps filling the port.
        held.extend(silent(addr, 200));
        slowest = slowest.max(healthz(addr));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    trickle.join().unwrap();
    eprintln!(
        "/healthz with 100 idle keep-alive, 200 slow-head and {} silent connections opened: slowest of 10 answers {slowest:?}",
        held.len() - 100
    );
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
}

#[test]
fn idle_keep_alive_connections_and_slow_heads_are_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start(dir.path(), "127.0.0.1", &["--metrics-idle-timeout", "1"]);
    let mut idle = kept_alive(addr, 1).pop().unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(3)).is_some());
    let idle_closed = started.elapsed();
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    let mut writer = slow.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..15 {
            if writer.write_all(b"X").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    assert!(closed_within(&mut slow, Duration::from_secs(3)).is_some());
    let slow_closed = started.elapsed();
    trickle.join().unwrap();
    eprintln!(
        "idle keep-alive closed after {idle_closed:?}; a head a byte every 200 ms after {slow_closed:?}"
    );
    for took in [idle_closed, slow_closed] {
        assert!(took >= Duration::from_millis(800) && took < Duration::from_millis(2_000));
    }
}

#[test]
fn an_answer_the_client_does_not_read_is_cut_at_the_request_deadline() {
    let dir = tempfile::tempdir().unwrap();
    // Each request has 1 s for its head and 5 s more to be answered.
    let (_server, addr) = start(dir.path(), "127.0.0.1", &["--metrics-idle-timeout", "1"]);
    let scrape = ask(
        addr,
        "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    );
    // Pipelined scrapes whose answers (16 MiB) fill both sockets' buffers
    // (at most 4 MiB here) many times over.
    let count = (16 * 1024 * 1024 / scrape.len()).clamp(100, 20_000);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream = TcpStream::from(socket);
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = stream.write_all("GET /metrics HTTP/1.1\r\n\r\n".repeat(count).as_bytes());
    // Nothing read until past the deadline: the server has let go. (Had it
    // not, reading now would let it go on, and every answer would come.)
    std::thread::sleep(Duration::from_millis(7_500));
    let received = closed_within(&mut stream, Duration::from_secs(3));
    let total = count * scrape.len();
    eprintln!(
        "{count} pipelined scrapes never read: closed with {received:?} of {total} bytes sent"
    );
    let received = received.expect("the connection was not closed");
    assert!(
        received < total / 2,
        "a connection whose answers are not read was kept past its deadline"
    );
}

#[test]
fn connect_gets_405_at_once_and_absolute_form_targets_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start(dir.path(), "127.0.0.1", &[]);
    let started = Instant::now();
    let connect = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    let answer = ask(addr, connect, Duration::from_secs(3));
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer:?}");
    assert!(
        took < Duration::from_secs(1),
        "CONNECT answered after {took:?}"
    );
    let absolute = "GET http://t/healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let answer = ask(addr, absolute, Duration::from_secs(3));
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
        "{answer:?}"
    );
    eprintln!("CONNECT: 405 after {took:?}");
    // On loopback there is nothing to warn about.
    assert!(!read_logs(dir.path()).contains("not on a loopback address"));
}

#[test]
fn a_metrics_port_off_loopback_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start(dir.path(), "0.0.0.0", &[]);
    healthz(addr);
    let warned = (0..100).any(|_| {
        let found = read_logs(dir.path())
            .lines()
            .any(|line| line.contains("WARN") && line.contains("not on a loopback address"));
        if !found {
            std::thread::sleep(Duration::from_millis(20));
        }
        found
    });
    assert!(warned, "{}", read_logs(dir.path()));
}
