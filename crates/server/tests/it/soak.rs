//! The long runs of docs/RELIABILITY.md, started by scripts/soak.sh (they are
//! `#[ignore]`d in the normal suite): timing of failed logins, and a load of
//! a thousand clients that drop their connections at random.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use echo_proto::{ClientMsg, ErrorCode, Secret, ServerMsg};
use echo_testkit::{ServerProcess, TestServer, auth_config, noise};
use tokio::{io::AsyncWriteExt, net::TcpStream};

use echo_testkit::PASSWORD;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run by scripts/soak.sh"]
async fn unknown_users_and_wrong_passwords_take_the_same_time() {
    let server = TestServer::start(auth_config()).await;
    // Forty accounts, so that no account reaches its back-off.
    for i in 0..40 {
        let mut client = server.connect_raw().await;
        let _ask = client.recv().await;
        client
            .send(&ClientMsg::Register {
                user: format!("acct{i}"),
                password: Secret::new(PASSWORD),
            })
            .await;
        assert!(matches!(client.recv().await, ServerMsg::Welcome { .. }));
    }
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for round in 0..300 {
        let mut client = server.connect_raw().await;
        let _ask = client.recv().await;
        // Interleaved, so that machine noise falls on both alike.
        for (user, times) in [
            (format!("nobody{round}"), &mut unknown),
            (format!("acct{}", round % 40), &mut wrong),
        ] {
            let started = Instant::now();
            client
                .send(&ClientMsg::Login {
                    user,
                    password: Secret::new("wrong horse battery"),
                })
                .await;
            match client.recv().await {
                ServerMsg::Error {
                    code: ErrorCode::InvalidCredentials,
                    ..
                } => {}
                other => panic!("unexpected {other:?}"),
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        // A right password ends each account's run of failures.
        if round % 40 == 39 {
            for i in 0..40 {
                let mut client = server.connect_raw().await;
                let _ask = client.recv().await;
                client
                    .send(&ClientMsg::Login {
                        user: format!("acct{i}"),
                        password: Secret::new(PASSWORD),
                    })
                    .await;
                assert!(matches!(client.recv().await, ServerMsg::Welcome { .. }));
            }
        }
    }
    let (u, w) = (median(unknown), median(wrong));
    let difference = (u - w).abs() / u.max(w);
    eprintln!(
        "median login failure: unknown user {u:.2} ms, wrong password {w:.2} ms, difference {:.1} %",
        difference * 100.0
    );
    assert!(difference < 0.10, "unknown {u:.2} ms vs wrong {w:.2} ms");
    server.stop().await;
}

#[test]
#[ignore = "long: run by scripts/soak.sh"]
fn a_thousand_clients_with_random_abrupt_disconnects() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    // All the clients come from 127.0.0.1: lift the per-source limits.
    let limits =
        "max_connections = 4096\nmax_connections_per_ip = 4096\nmax_handshakes_per_ip = 4096\n";
    std::fs::write(&config, limits).unwrap();
    let config = config.to_str().unwrap().to_owned();
    let server = ServerProcess::start(
        dir.path(),
        &["--port", "0", "--mode", "ident", "--config", &config],
        &[],
    );
    let (addr, pid) = (server.addr(), server.child.id());
    std::thread::sleep(Duration::from_millis(300));
    let start_rss = echo_testkit::rss_kib(pid);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let (completed, dropped, peak) = runtime.block_on(async move {
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(start_rss));
        let watcher = {
            let peak = std::sync::Arc::clone(&peak);
            tokio::spawn(async move {
                loop {
                    let rss = echo_testkit::rss_kib(pid);
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let tasks: Vec<_> = (0..1000u64)
            .map(|client| {
                tokio::spawn(async move {
                    let mut seed = client * 7919 + 1;
                    let (mut done, mut dropped) = (0u64, 0u64);
                    let mut conn: Option<echo_testkit::TestClient> = None;
                    while done < 100 {
                        let client_conn = match conn.as_mut() {
                            Some(c) => c,
                            None => {
                                let stream = TcpStream::connect(addr).await.unwrap();
                                let mut c = echo_testkit::TestClient::after_hello(stream).await;
                                c.identify(&format!("load{client}")).await;
                                conn.insert(c)
                            }
                        };
                        let text = format!("client {client} trip {done}");
                        if noise(&mut seed).is_multiple_of(50) {
                            // Vanish abruptly: half a frame, then a reset.
                            let _ = client_conn.stream.write_all(&[0, 0, 0, 40, b'{']).await;
                            let _ = client_conn.stream.set_zero_linger();
                            conn = None;
                            dropped += 1;
                            continue;
                        }
                        assert_eq!(client_conn.ask(done, &text).await, vec![text]);
                        done += 1;
                    }
                    (done, dropped)
                })
            })
            .collect();
        let (mut completed, mut dropped) = (0, 0);
        for task in tasks {
            let (d, x) = task.await.unwrap();
            completed += d;
            dropped += x;
        }
        watcher.abort();
        (
            completed,
            dropped,
            peak.load(std::sync::atomic::Ordering::Relaxed),
        )
    });
    let elapsed = started.elapsed();
    // The server gives freed memory back every 2 s once many connections
    // have closed: waited for, within 10 s.
    echo_testkit::wait_until(Duration::from_secs(10), || {
        echo_testkit::rss_kib(pid) < start_rss + (peak - start_rss) / 2 + 8 * 1024
    });
    let end_rss = echo_testkit::rss_kib(pid);
    eprintln!(
        "1000 clients: {completed} round trips, all correct, {dropped} abrupt disconnects, {:.1} s; \
         server RSS {start_rss} KiB at start, {peak} KiB at peak, {end_rss} KiB after",
        elapsed.as_secs_f64()
    );
    assert_eq!(completed, 100_000);
    assert!(
        end_rss < start_rss + (peak - start_rss) / 2 + 8 * 1024,
        "memory did not come back: start {start_rss}, peak {peak}, end {end_rss} KiB"
    );
}
