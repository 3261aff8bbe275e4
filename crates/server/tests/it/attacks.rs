//! What an attacker tried (docs/RELIABILITY.md, "Hardening II"): each test
//! repeats one attack against a real server on loopback and checks that
//! other clients do not notice it. Every loop is bounded in count and time.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use echo_proto::{ClientMsg, ErrorCode, Secret, ServerMsg, ext::AsyncFrameRead};
use echo_testkit::{
    ServerProcess, TestClient, TestServer, auth_config, read_logs, rss_kib, test_config,
};
use tokio::net::TcpStream;

use echo_testkit::PASSWORD;

/// Look-alike symbols: zxcvbn tries every substitution on them, the most
/// costly password for its size the attack found.
fn costly_password() -> String {
    "4@8({[<3169!|1|70$5+%2".chars().cycle().take(100).collect()
}

async fn log_in(server: &TestServer, user: &str) -> TestClient {
    let mut client = server.connect_raw().await;
    assert!(matches!(client.recv().await, ServerMsg::AskAuth { .. }));
    client
        .send(&ClientMsg::Register {
            user: user.into(),
            password: Secret::new(PASSWORD),
        })
        .await;
    assert!(matches!(client.recv().await, ServerMsg::Welcome { .. }));
    client
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// Four connections registering with costly passwords, as fast as the
/// server answers, until `until`: half with a taken name, half with new ones.
async fn register_costly_passwords(server: &TestServer, attacker: usize, until: Instant) {
    let mut attempt = 0;
    while Instant::now() < until && attempt < 1000 {
        let mut client = server.connect_raw().await;
        while let Some(ServerMsg::AskAuth { .. } | ServerMsg::Error { .. }) =
            client.try_recv().await
        {
            attempt += 1;
            let user = if attempt % 2 == 0 {
                "victim".to_owned()
            } else {
                format!("attacker{attacker}x{attempt}")
            };
            client
                .send(&ClientMsg::Register {
                    user,
                    password: Secret::new(costly_password()),
                })
                .await;
            if Instant::now() >= until {
                break;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costly_passwords_do_not_stall_other_clients() {
    let mut config = auth_config();
    // Many source addresses in effect: the per-address allowance does not
    // come to the rescue.
    config.auth.attempts_per_minute = 1_000_000;
    let server = TestServer::start(config).await;
    log_in(&server, "victim").await;
    let mut established = log_in(&server, "bystander").await;

    let until = Instant::now() + Duration::from_secs(4);
    let attackers: Vec<_> = (0..4)
        .map(|attacker| {
            let server = &server;
            async move { register_costly_passwords(server, attacker, until).await }
        })
        .collect();
    let measure = async {
        // Let the attack get going.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut echoes = Vec::new();
        let mut hellos = Vec::new();
        let mut id = 0;
        while Instant::now() + Duration::from_millis(200) < until && id < 2000 {
            id += 1;
            let sent = Instant::now();
            assert_eq!(established.ask(id, "ping").await, ["ping"]);
            echoes.push(sent.elapsed());
            if id % 20 == 0 {
                let sent = Instant::now();
                let mut stream = TcpStream::connect(server.addr).await.unwrap();
                let hello = stream.recv_msg::<ServerMsg>().await.unwrap();
                assert!(matches!(hello, Some(ServerMsg::Hello { .. })));
                hellos.push(sent.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (echoes, hellos)
    };
    let (_, (echoes, hellos)) = tokio::join!(futures_util::future::join_all(attackers), measure);
    assert!(echoes.len() >= 20, "only {} echoes measured", echoes.len());
    let echo_p50 = median(echoes);
    let hello_p50 = median(hellos.clone());
    eprintln!("during the attack: echo p50 {echo_p50:?}, hello p50 {hello_p50:?}");
    assert!(
        echo_p50 < Duration::from_millis(5),
        "an established client's echo p50 was {echo_p50:?} during the attack"
    );
    assert!(
        hello_p50 < Duration::from_millis(50),
        "a new connection waited {hello_p50:?} (median) for hello during the attack: {hellos:?}"
    );
    server.stop().await;
}

/// Connects from `source` and returns the frames the server sends before it
/// waits for the client (at most two, within a second).
async fn first_frames(server: &TestServer, source: &str) -> (TcpStream, Vec<ServerMsg>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    let mut frames = Vec::new();
    while frames.len() < 2 {
        let next = tokio::time::timeout(Duration::from_secs(1), stream.recv_msg::<ServerMsg>());
        match next.await {
            Ok(Ok(Some(frame))) => frames.push(frame),
            _ => break,
        }
    }
    (stream, frames)
}

fn is_refused_per_source(frames: &[ServerMsg]) -> bool {
    matches!(
        frames,
        [
            ServerMsg::Hello { .. },
            ServerMsg::Error {
                code: ErrorCode::TooManyConnections,
                fatal: true,
                ..
            }
        ]
    )
}

#[tokio::test]
async fn silent_sockets_from_one_address_leave_room_for_others() {
    // The attack: one address opens more silent sockets than the server has
    // slots. With the default per-source limits it holds 32 of the 40.
    let mut config = test_config();
    config.limits.max_connections = 40;
    let server = TestServer::start(config).await;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        let (stream, frames) = first_frames(&server, "127.0.0.2").await;
        if is_refused_per_source(&frames) {
            refused += 1;
        } else {
            assert!(matches!(
                frames[..],
                [ServerMsg::Hello { .. }, ServerMsg::AskName {}]
            ));
            held.push(stream);
        }
    }
    assert_eq!((held.len(), refused), (32, 8));
    let mut other = server.connect_from("127.0.0.3").await;
    other.identify("bystander").await;
    assert_eq!(other.ask(1, "still here").await, ["still here"]);
    server.stop().await;
}

#[tokio::test]
async fn established_connections_count_against_their_address_too() {
    let mut config = test_config();
    config.limits.max_connections_per_ip = 3;
    config.limits.max_handshakes_per_ip = 2;
    let server = TestServer::start(config).await;
    let mut first = server.connect_from("127.0.0.2").await;
    let mut second = server.connect_from("127.0.0.2").await;
    let (_, frames) = first_frames(&server, "127.0.0.2").await;
    assert!(is_refused_per_source(&frames), "{frames:?}");
    // Once through the handshake, they leave room for one more.
    first.identify("ann").await;
    second.identify("ann").await;
    let mut third = server.connect_from("127.0.0.2").await;
    third.identify("ann").await;
    let (_, frames) = first_frames(&server, "127.0.0.2").await;
    assert!(is_refused_per_source(&frames), "{frames:?}");
    let mut other = server.connect_from("127.0.0.3").await;
    other.identify("bob").await;
    // A connection that leaves gives its place back.
    drop(third);
    let mut admitted = false;
    for _ in 0..100 {
        let (_, frames) = first_frames(&server, "127.0.0.2").await;
        if !is_refused_per_source(&frames) {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        admitted,
        "the place of a closed connection was not given back"
    );
    server.stop().await;
}

/// `clients` connections each ask for `/repeat 100` of 65,000 bytes and never
/// read; the server may grow by at most `limit_mib` (the issue's figure is
/// 300 MiB for 1,000 clients).
async fn unread_repeats(clients: u64, limit_mib: u64) {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--port",
        "0",
        "--mode",
        "ident",
        "--max-connections",
        "4096",
        "--max-connections-per-ip",
        "4096",
        "--max-handshakes-per-ip",
        "4096",
    ];
    let server = ServerProcess::start(dir.path(), &args, &[]);
    let (addr, pid) = (server.addr(), server.child.id());
    let connect = || async move {
        let mut client = TestClient::after_hello(TcpStream::connect(addr).await.unwrap()).await;
        client.identify("attacker").await;
        client
    };
    let mut bystander = connect().await;
    let before = rss_kib(pid);
    let request = format!("/repeat 100 {}", "r".repeat(65_000));
    let mut attackers = Vec::new();
    for id in 0..clients {
        let mut client = connect().await;
        client.say(id, &request).await;
        attackers.push(client);
    }
    // The server makes replies until every attacker's socket is full.
    let mut peak = before;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss_kib(pid));
    }
    assert_eq!(bystander.ask(1, "still here").await, ["still here"]);
    let grown_mib = (peak - before) / 1024;
    eprintln!(
        "{clients} unread /repeat 100 x 65,000 bytes: server RSS {before} KiB -> peak {peak} KiB (+{grown_mib} MiB)"
    );
    assert!(grown_mib <= limit_mib, "the server grew by {grown_mib} MiB");
    drop(attackers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_that_are_never_read_hold_little_memory() {
    unread_repeats(200, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run by scripts/soak.sh"]
async fn a_thousand_repeats_that_are_never_read_hold_little_memory() {
    unread_repeats(1000, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_low_open_file_limit_every_extra_client_is_told_busy() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new("prlimit");
    command
        .arg("--nofile=200:200")
        .arg(env!("CARGO_BIN_EXE_echo-server"));
    let args = ["--port", "0", "--mode", "ident"];
    let config = dir.path().join("server.toml");
    // All clients come from 127.0.0.1: only the connection limit applies.
    std::fs::write(
        &config,
        "max_connections_per_ip = 4096\nmax_handshakes_per_ip = 4096\n",
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let args: Vec<&str> = args.into_iter().chain(["--config", &config]).collect();
    let mut server = ServerProcess::start_command(command, dir.path(), &args, &[]);
    let addr = server.addr();
    let clients = (0..300).map(|_| async move {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut client = TestClient { stream };
        let mut frames = Vec::new();
        while frames.len() < 2 {
            let next = tokio::time::timeout(
                Duration::from_secs(20),
                client.stream.recv_msg::<ServerMsg>(),
            );
            match next.await {
                Ok(Ok(Some(frame))) => frames.push(frame),
                _ => break,
            }
        }
        let served = matches!(frames[..], [ServerMsg::Hello { .. }, ServerMsg::AskName {}]);
        let busy = matches!(
            frames[..],
            [
                ServerMsg::Hello { .. },
                ServerMsg::Error {
                    code: ErrorCode::ServerBusy,
                    ..
                }
            ]
        );
        // Served clients stay; refused ones leave, as a real client would.
        (served || busy, served.then_some(client))
    });
    let outcomes = futures_util::future::join_all(clients).await;
    let answered = outcomes.iter().filter(|(answered, _)| *answered).count();
    let served = outcomes
        .iter()
        .filter(|(_, client)| client.is_some())
        .count();
    drop(outcomes);
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let log = read_logs(dir.path());
    let summary: Vec<&str> = log
        .lines()
        .filter(|line| !line.contains("INFO"))
        .take(20)
        .collect();
    assert_eq!(
        answered,
        300,
        "clients hung; the log says:\n{}",
        summary.join("\n")
    );
    assert_eq!(served, 200 - 64, "the limit minus the reserve are served");
    assert!(
        log.contains("the open-file limit cannot hold max_connections"),
        "{log}"
    );
    // A flood of extra clients may use up the spare descriptors for a
    // moment: that is one line, not one per failed accept.
    let failed_accepts = log.matches("Too many open files").count();
    assert!(
        failed_accepts <= 1,
        "{failed_accepts} lines of failed accepts"
    );
}
