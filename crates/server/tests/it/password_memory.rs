//! Argon2id takes 19 MiB of working memory per hash: the password threads
//! keep theirs and hash into it again, so a burst of logins leaves the
//! server no bigger than its workers' memory.
#![allow(clippy::unwrap_used)]

use std::{net::SocketAddr, time::Duration};

use echo_proto::{
    ClientMsg, Secret, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};
use echo_testkit::{ServerProcess, rss_kib};

use echo_testkit::PASSWORD;
const WORKERS: u64 = 2;

/// Connects, sends `msg` after `ask_auth`; the answer.
fn send_auth(addr: SocketAddr, msg: &ClientMsg) -> Option<ServerMsg> {
    let mut stream = echo_testkit::connect_blocking(addr);
    assert!(matches!(
        stream.recv_msg::<ServerMsg>().unwrap(),
        Some(ServerMsg::AskAuth { .. })
    ));
    stream.send_msg(msg).unwrap();
    stream.recv_msg::<ServerMsg>().unwrap()
}

/// Whether `msg` gets `welcome`.
fn authenticate(addr: SocketAddr, msg: &ClientMsg) -> bool {
    let answer = send_auth(addr, msg);
    let welcomed = matches!(answer, Some(ServerMsg::Welcome { .. }));
    if !welcomed {
        eprintln!("instead of welcome: {answer:?}");
    }
    welcomed
}

/// `count` logins at once, each on a thread of its own.
fn login_burst(addr: SocketAddr, count: usize) {
    let threads: Vec<_> = (0..count)
        .map(|_| {
            std::thread::spawn(move || {
                let login = ClientMsg::Login {
                    user: "ann".into(),
                    password: Secret::new(PASSWORD),
                };
                authenticate(addr, &login)
            })
        })
        .collect();
    for thread in threads {
        assert!(thread.join().unwrap(), "a login failed");
    }
}

#[test]
fn a_login_burst_leaves_rss_within_the_workers_hashing_memory() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!("password_workers = {WORKERS}\nauth_attempts_per_minute = 1000\n"),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let server = ServerProcess::start(
        dir.path(),
        &["--port", "0", "--mode", "auth", "--config", config],
        &[],
    );
    let (addr, pid) = (server.addr(), server.child.id());
    // The strength estimate's word lists are loaded on its first use, once:
    // a weak password is judged (and refused) before the start is measured.
    let weak = ClientMsg::Register {
        user: "bob".into(),
        password: Secret::new("password"),
    };
    assert!(matches!(
        send_auth(addr, &weak),
        Some(ServerMsg::Error { .. })
    ));
    std::thread::sleep(Duration::from_millis(300));
    let start = rss_kib(pid);
    let register = ClientMsg::Register {
        user: "ann".into(),
        password: Secret::new(PASSWORD),
    };
    assert!(authenticate(addr, &register));
    let mut after = Vec::new();
    for _ in 0..3 {
        login_burst(addr, 12);
        std::thread::sleep(Duration::from_millis(200));
        after.push(rss_kib(pid));
    }
    let grown_mib: Vec<u64> = after
        .iter()
        .map(|kib| kib.saturating_sub(start) / 1024)
        .collect();
    eprintln!(
        "RSS {start} KiB at start; after each burst of 12 logins: {after:?} KiB (+{grown_mib:?} MiB)"
    );
    let limit_mib = WORKERS * 20;
    assert!(
        grown_mib.iter().all(|&mib| mib <= limit_mib),
        "RSS grew by {grown_mib:?} MiB, more than {WORKERS} workers x 20 MiB"
    );
}
