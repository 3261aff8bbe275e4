//! Bad input, faults and attacks, tried on purpose (docs/RELIABILITY.md).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use echo_proto::{
    ByeReason, ClientMsg, ErrorCode, Secret, ServerMsg,
    ext::{AsyncFrameWrite, BlockingFrameRead, BlockingFrameWrite},
};
use echo_server::store::UserStore;
use echo_testkit::{
    ServerProcess, TestServer, auth_config, connect_blocking, identify_blocking, noise, test_config,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

use echo_testkit::PASSWORD;

#[tokio::test]
async fn a_megabyte_password_is_refused_before_anything_is_hashed() {
    let server = TestServer::start(auth_config()).await;
    let mut client = server.connect_raw().await;
    assert!(matches!(client.recv().await, ServerMsg::AskAuth { .. }));
    let huge = ClientMsg::Register {
        user: "x".repeat(1_000_000),
        password: Secret::new("y".repeat(1_000_000)),
    };
    let json = serde_json::to_vec(&huge).unwrap();
    // Only the header and the first bytes are read: the header is refused.
    client
        .stream
        .write_all(&(json.len() as u32).to_be_bytes())
        .await
        .unwrap();
    let _ = client.stream.write_all(&json[..1000]).await;
    assert!(matches!(
        client.recv().await,
        ServerMsg::Error {
            code: ErrorCode::FrameTooLarge,
            fatal: true,
            ..
        }
    ));
    assert!(server.store.users().await.unwrap().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_kilobyte_password_within_the_frame_limit_is_refused_as_too_long() {
    let server = TestServer::start(auth_config()).await;
    let mut client = server.connect_raw().await;
    assert!(matches!(client.recv().await, ServerMsg::AskAuth { .. }));
    client
        .send(&ClientMsg::Register {
            user: "ann".into(),
            password: Secret::new("p".repeat(2000)),
        })
        .await;
    match client.recv().await {
        ServerMsg::Error {
            code: ErrorCode::WeakPassword,
            message,
            ..
        } => {
            assert!(message.contains("longer than 1024 bytes"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    server.stop().await;
}

// On the real clock, with a short timeout: the store answers from threads
// of its own, and a paused clock would jump to the deadline meanwhile.
#[tokio::test]
async fn a_header_that_never_completes_is_dropped_by_the_handshake_timeout() {
    let (server, mut client) = TestServer::asked_for_a_name(Duration::from_secs(2)).await;
    let started = Instant::now();
    client.stream.write_all(&[0, 0]).await.unwrap();
    assert_eq!(client.recv().await, ServerMsg::bye(ByeReason::Timeout));
    assert!(started.elapsed() >= Duration::from_millis(1500));
    server.stop().await;
}

#[tokio::test]
async fn slowloris_a_byte_every_100_ms_is_dropped_by_the_handshake_timeout() {
    let (server, mut client) = TestServer::asked_for_a_name(Duration::from_secs(1)).await;
    let frame = {
        let json = serde_json::to_vec(&ClientMsg::Name {
            name: "slow".repeat(10),
        })
        .unwrap();
        let mut frame = (json.len() as u32).to_be_bytes().to_vec();
        frame.extend(json);
        frame
    };
    let started = Instant::now();
    for byte in frame {
        if client.stream.write_all(&[byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    assert_eq!(client.recv().await, ServerMsg::bye(ByeReason::Timeout));
    // The frame (about 60 bytes) would take 6 s at this pace.
    assert!(started.elapsed() < Duration::from_secs(5));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_during_a_flood_is_dropped_not_the_server() {
    let mut config = test_config();
    config.timeouts.write = Duration::from_secs(1);
    let server = TestServer::start(config).await;
    let mut bystander = server.connect().await;
    let mut flooder = server.connect().await;
    let text = "z".repeat(16 * 1024);
    // Ask for far more than socket buffers hold, and never read.
    for id in 0..200 {
        if flooder
            .stream
            .send_msg(&ClientMsg::Say {
                id,
                text: format!("/repeat 100 {text}"),
            })
            .await
            .is_err()
        {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(bystander.ask(1, "still served").await, vec!["still served"]);
    // The flooder's connection is gone: reading drains what the kernel
    // buffered, then ends.
    let mut sink = vec![0u8; 1 << 20];
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match flooder.stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        drained.is_ok(),
        "the server kept the stalled connection open"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_random_byte_streams_never_hurt_the_server() {
    let mut config = test_config();
    config.timeouts.handshake = Duration::from_secs(2);
    config.limits.max_connections = 4096;
    let server = TestServer::start(config).await;
    let mut bystander = server.connect().await;
    let mut seed = 0x5eed_u64;
    let mut streams = Vec::new();
    for round in 0..2_000u64 {
        let len = (noise(&mut seed) % 300) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| noise(&mut seed) as u8).collect();
        // Half of them look like a frame header first, to get past it.
        if round % 2 == 0 && len >= 4 {
            let announced = (noise(&mut seed) % 600) as u32;
            bytes[..4].copy_from_slice(&announced.to_be_bytes());
        }
        streams.push(bytes);
    }
    for chunk in streams.chunks(100) {
        let tasks: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|bytes| {
                let addr = server.addr;
                tokio::spawn(async move {
                    let mut stream = TcpStream::connect(addr).await.unwrap();
                    let _ = stream.write_all(&bytes).await;
                    let _ = stream.shutdown().await;
                    let mut sink = Vec::new();
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink))
                            .await;
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(bystander.ask(1, "ok").await, vec!["ok"]);
    }
    let mut fresh = server.connect().await;
    assert_eq!(
        fresh.ask(2, "after the storm").await,
        vec!["after the storm"]
    );
    server.stop().await;
}

#[test]
fn graceful_shutdown_under_load_says_bye_to_everyone_and_exits_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(
        dir.path(),
        &["--port", "0", "--mode", "ident", "--drain-timeout", "5"],
        &[],
    );
    let addr = server.addr();
    let clients: Vec<_> = (0..200)
        .map(|i| {
            let mut stream = connect_blocking(addr);
            identify_blocking(&mut stream, &format!("c{i}"));
            stream
        })
        .collect();
    // Half of them keep talking while the signal comes.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let talkers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut stream)| {
            let answered = std::sync::Arc::clone(&answered);
            std::thread::spawn(move || {
                let mut id = 0;
                loop {
                    if i % 2 == 0 {
                        id += 1;
                        if stream
                            .send_msg(&ClientMsg::Say {
                                id,
                                text: "busy".into(),
                            })
                            .is_err()
                        {
                            return false;
                        }
                    }
                    match stream.recv_msg::<ServerMsg>() {
                        Ok(Some(ServerMsg::Bye {
                            reason: ByeReason::Shutdown,
                            ..
                        })) => return true,
                        Ok(Some(ServerMsg::Reply { .. })) => {
                            if id == 1 {
                                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                        }
                        _ => return false,
                    }
                }
            })
        })
        .collect();
    // The signal comes once every talker has been answered (bounded).
    echo_testkit::wait_until(Duration::from_secs(10), || {
        answered.load(std::sync::atomic::Ordering::SeqCst) >= 100
    });
    let signalled = std::time::Instant::now();
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let said_bye = talkers
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|&bye| bye)
        .count();
    assert_eq!(said_bye, 200, "every client gets bye");
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success());
    assert!(
        signalled.elapsed() < Duration::from_secs(6),
        "exited within the drain time"
    );
}

#[test]
fn a_failing_disk_refuses_the_change_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // No file may grow past 256 KiB: the new database (116 KiB) fits, and
    // its write-ahead log fills after a few registrations; the rest fail.
    let mut command = std::process::Command::new("prlimit");
    command
        .arg("--fsize=262144:262144")
        .arg(env!("CARGO_BIN_EXE_echo-server"));
    let config = dir.path().join("server.toml");
    std::fs::write(&config, "auth_attempts_per_minute = 100000\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    let server = ServerProcess::start_command(
        command,
        dir.path(),
        &["--port", "0", "--config", &config],
        &[],
    );
    let addr = server.addr();
    let mut welcomed = Vec::new();
    let mut refused = 0;
    for i in 0..40 {
        let user = format!("user{i:02}");
        let mut stream = connect_blocking(addr);
        let _ask = stream.recv_msg::<ServerMsg>().unwrap();
        stream
            .send_msg(&ClientMsg::Register {
                user: user.clone(),
                password: Secret::new(PASSWORD),
            })
            .unwrap();
        match stream.recv_msg::<ServerMsg>().unwrap() {
            Some(ServerMsg::Welcome { .. }) => welcomed.push(user),
            Some(ServerMsg::Error {
                code: ErrorCode::Internal,
                fatal: false,
                ..
            }) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        !welcomed.is_empty() && refused > 0,
        "{} welcomed, {refused} refused",
        welcomed.len()
    );
    // Still serving, and still saying why it cannot log anyone in.
    let mut stream = connect_blocking(addr);
    assert!(matches!(
        stream.recv_msg::<ServerMsg>().unwrap(),
        Some(ServerMsg::AskAuth { .. })
    ));
    let login = ClientMsg::Login {
        user: welcomed[0].clone(),
        password: Secret::new(PASSWORD),
    };
    stream.send_msg(&login).unwrap();
    // A login writes a session, which may or may not still fit.
    assert!(matches!(
        stream.recv_msg::<ServerMsg>().unwrap(),
        Some(
            ServerMsg::Error {
                code: ErrorCode::Internal,
                fatal: false,
                ..
            } | ServerMsg::Welcome { .. }
        )
    ));
    drop(server);
    // Opened again without the limit: whole, with every acknowledged user.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let users: Vec<String> = rt.block_on(store_users(&dir.path().join("data/echo.db")));
    for user in &welcomed {
        assert!(
            users.contains(user),
            "{user} got welcome but is not in the store"
        );
    }
    assert_eq!(
        users.len(),
        welcomed.len(),
        "a refused registration left a user behind"
    );
}

async fn store_users(path: &std::path::Path) -> Vec<String> {
    let store = echo_server::store::SqliteStore::open(path, Default::default())
        .await
        .unwrap();
    echo_testkit::conformance::user_names(&store).await
}
