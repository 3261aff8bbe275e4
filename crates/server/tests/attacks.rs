//! What an attacker tried (docs/RELIABILITY.md, "Hardening II"): each test
//! repeats one attack against a real server on loopback and checks that
//! other clients do not notice it. Every loop is bounded in count and time.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{TestClient, TestServer, auth_config};
use echo_proto::{ClientMsg, Secret, ServerMsg, ext::AsyncFrameRead};
use echo_server::ServerConfig;
use tokio::net::TcpStream;

const PASSWORD: &str = "correct horse battery";

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
    let config = ServerConfig {
        // Many source addresses in effect: the per-address allowance does
        // not come to the rescue.
        auth_attempts_per_minute: 1_000_000,
        ..auth_config()
    };
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
