//! The edges of `echo-server upgrade` (#28), on the real binary: a server
//! shutting down upgrades no more and lets its port refuse; a client half
//! way through its PROXY header or TLS handshake at the handover gets its
//! `hello` and `bye {restart}` rather than a cut connection; a full server
//! hands over; two upgrades at once, and one while the previous old process
//! still drains.
#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    net::{SocketAddr, TcpStream},
    process::Command,
    time::Duration,
};

use echo_proto::{ByeReason, ErrorCode, ServerMsg, ext::BlockingFrameRead};
use echo_testkit::{KillOnDrop, ServerProcess, connect_blocking, replace_with_script, wait_until};
use nix::sys::signal::Signal;

use crate::upgrade::{IDENT, echoes, identified, replies_then_bye, say, served_from_a_copy};

/// The new pid in `upgrade`'s output, `upgraded: pid N serves port P; ...`.
pub(crate) fn upgraded(out: &std::process::Output) -> KillOnDrop {
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{printed}{stderr}");
    let rest = printed.strip_prefix("upgraded: pid ").unwrap();
    KillOnDrop(rest.split(' ').next().unwrap().parse().unwrap())
}

/// The next frame on `stream`, which must come within 10 s.
fn next(stream: &mut TcpStream) -> Option<ServerMsg> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.recv_msg::<ServerMsg>().unwrap()
}

/// Whether a connection to `addr` is refused (nobody holds the port).
fn refused(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err()
}

#[test]
fn a_server_shutting_down_upgrades_no_more_and_its_port_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = ServerProcess::start(dir.path(), IDENT, &[]);
    let addr = old.addr();
    // Never reads its `bye` nor closes: the server lingers a second on it.
    let _lingering = identified(addr, "slow");
    old.signal(Signal::SIGTERM);
    old.wait_for_log("shutdown requested");
    // Before, its copy of the port kept the socket listening for nobody:
    // a client was let in and hung until the process was gone.
    assert!(refused(addr), "a connection was queued for nobody");
    old.signal(Signal::SIGUSR2);
    old.wait_for_log("upgrade refused: the server is shutting down");
    let out = old.admin(&["upgrade"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        old.child.try_wait().unwrap().is_none(),
        "it had exited already: nothing was tried"
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(said.contains("shutting down: not upgraded"), "{said}");
    assert!(old.wait_exit(Duration::from_secs(15)).success());
    // Nobody took the port over.
    assert!(refused(addr));
}

#[test]
fn a_new_process_still_starting_when_the_server_stops_is_stopped_too() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, real, mut old) = served_from_a_copy(dir.path());
    let addr = old.addr();
    // A new binary slow to start: shutdown is asked for meanwhile.
    let pid_file = dir.path().join("new.pid");
    let body = format!(
        "echo $$ > {}; sleep 2; exec {} \"$@\"",
        pid_file.display(),
        real.display()
    );
    replace_with_script(&binary, &body);
    let data = dir.path().join("data");
    let upgrade = std::thread::spawn(move || {
        Command::new(echo_testkit::server_binary())
            .args(["upgrade", "--data-dir"])
            .arg(data)
            .output()
            .unwrap()
    });
    assert!(wait_until(Duration::from_secs(10), || pid_file.exists()));
    let new = KillOnDrop(
        std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    );
    old.signal(Signal::SIGTERM);
    let out = upgrade.join().unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(old.wait_exit(Duration::from_secs(15)).success());
    // Before, the new process went on, found its old one gone, and served
    // the port of a server that was asked to stop.
    assert!(wait_until(Duration::from_secs(5), || !new.is_running()));
    std::thread::sleep(Duration::from_secs(2));
    assert!(refused(addr), "the stopped server's port is served");
}

#[test]
fn a_proxy_header_on_its_way_at_the_handover_is_read_and_answered_with_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = IDENT.to_vec();
    args.extend(["--proxy-protocol-from", "127.0.0.1/32"]);
    let mut old = ServerProcess::start(dir.path(), &args, &[]);
    let addr = old.addr();
    // The old process takes the balancer's connection; its header comes
    // only after the handover.
    let mut early = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let new = upgraded(&old.admin(&["upgrade"]));
    let header = format!("PROXY TCP4 10.1.2.3 127.0.0.1 5000 {}\r\n", addr.port());
    early.write_all(header.as_bytes()).unwrap();
    assert!(matches!(next(&mut early), Some(ServerMsg::Hello { .. })));
    assert_eq!(next(&mut early), Some(ServerMsg::AskName {}));
    assert!(matches!(
        next(&mut early),
        Some(ServerMsg::Bye {
            reason: ByeReason::Restart,
            ..
        })
    ));
    assert!(old.wait_exit(Duration::from_secs(10)).success());
    // The new process trusts the balancer as the old one did.
    let mut later = TcpStream::connect(addr).unwrap();
    let header = format!("PROXY TCP4 10.1.2.4 127.0.0.1 5001 {}\r\n", addr.port());
    later.write_all(header.as_bytes()).unwrap();
    let mut later = echo_testkit::after_hello_blocking(later);
    echo_testkit::identify_blocking(&mut later, "zed");
    let listed = old.admin(&["clients"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("10.1.2.4:5001 via 127.0.0.1:"), "{listed}");
    assert!(new.is_running());
}

#[test]
fn a_full_server_hands_over_and_the_client_past_the_limit_is_told_busy() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = IDENT.to_vec();
    args.extend(["--max-connections", "3"]);
    let mut old = ServerProcess::start(dir.path(), &args, &[]);
    let addr = old.addr();
    let mut full: Vec<TcpStream> = (0..3).map(|n| identified(addr, &format!("c{n}"))).collect();
    let busy = |addr| {
        // After its `hello`.
        let mut stream = connect_blocking(addr);
        match next(&mut stream) {
            Some(ServerMsg::Error { code, fatal, .. }) => (code, fatal),
            other => panic!("expected server_busy, got {other:?}"),
        }
    };
    assert_eq!(busy(addr), (ErrorCode::ServerBusy, true));
    let new = upgraded(&old.admin(&["upgrade"]));
    for stream in &mut full {
        let (_, reason, _) = replies_then_bye(stream);
        assert_eq!(reason, ByeReason::Restart);
    }
    assert!(old.wait_exit(Duration::from_secs(10)).success());
    // The three come back to the new process, which has the same limit.
    let mut back: Vec<TcpStream> = (0..3).map(|n| identified(addr, &format!("c{n}"))).collect();
    assert_eq!(busy(addr), (ErrorCode::ServerBusy, true));
    say(&mut back[2], 1, "still");
    assert!(matches!(next(&mut back[2]), Some(ServerMsg::Reply { .. })));
    assert!(new.is_running());
}

#[test]
fn two_upgrades_at_once_make_one_new_process_and_the_other_is_told_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = ServerProcess::start(dir.path(), IDENT, &[]);
    let mut client = identified(old.addr(), "ann");
    let data = dir.path().join("data");
    let asked: Vec<_> = (0..2)
        .map(|_| {
            let data = data.clone();
            std::thread::spawn(move || {
                Command::new(echo_testkit::server_binary())
                    .args(["upgrade", "--data-dir"])
                    .arg(data)
                    .output()
                    .unwrap()
            })
        })
        .collect();
    let outs: Vec<_> = asked.into_iter().map(|t| t.join().unwrap()).collect();
    let (done, other): (Vec<_>, Vec<_>) = outs.into_iter().partition(|out| out.status.success());
    assert_eq!((done.len(), other.len()), (1, 1), "{done:?} {other:?}");
    let said = String::from_utf8_lossy(&other[0].stderr).into_owned();
    assert!(
        said.contains("handing the port over to a new process already"),
        "{said}"
    );
    let new = upgraded(&done[0]);
    let (_, reason, _) = replies_then_bye(&mut client);
    assert_eq!(reason, ByeReason::Restart);
    assert!(old.wait_exit(Duration::from_secs(10)).success());
    echoes(old.addr());
    assert!(new.is_running());
}

#[test]
fn an_upgrade_while_the_previous_old_process_still_drains_makes_a_third() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = ServerProcess::start(dir.path(), IDENT, &[]);
    let addr = first.addr();
    // The first process drains a slow reader for a while.
    let mut busy = identified(addr, "busy");
    let long = "z".repeat(60_000);
    say(&mut busy, 1, &format!("/repeat 100 {long}"));
    std::thread::sleep(Duration::from_millis(100));
    let second = upgraded(&first.admin(&["upgrade"]));
    let mut client = identified(addr, "ann");
    let third = upgraded(&first.admin(&["upgrade"]));
    assert!(first.child.try_wait().unwrap().is_none(), "still draining");
    let (_, reason, _) = replies_then_bye(&mut client);
    assert_eq!(reason, ByeReason::Restart);
    assert!(wait_until(Duration::from_secs(10), || !second.is_running()));
    let (replies, reason, _) = replies_then_bye(&mut busy);
    assert_eq!((replies.len(), reason), (100, ByeReason::Restart));
    assert!(first.wait_exit(Duration::from_secs(10)).success());
    echoes(addr);
    assert!(third.is_running());
}

#[tokio::test]
async fn a_tls_handshake_on_its_way_at_the_handover_is_finished_and_answered_with_restart() {
    use echo_proto::ext::AsyncFrameRead;
    let dir = tempfile::tempdir().unwrap();
    let (mut old, connector) = crate::admission::tls_server(dir.path(), &[]);
    let addr = old.addr();
    // Accepted by the old process; the ClientHello comes after the handover.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = old.admin(&["upgrade"]);
    let new = upgraded(&out);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    // Before, the old process cut the handshake: an EOF, which a client
    // cannot tell from a broken server.
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let mut frames = Vec::new();
    for _ in 0..3 {
        let frame = tokio::time::timeout(Duration::from_secs(10), tls.recv_msg::<ServerMsg>());
        frames.push(frame.await.unwrap().unwrap());
    }
    assert!(
        matches!(frames[0], Some(ServerMsg::Hello { .. })),
        "{frames:?}"
    );
    assert_eq!(frames[1], Some(ServerMsg::AskName {}));
    assert!(
        matches!(
            frames[2],
            Some(ServerMsg::Bye {
                reason: ByeReason::Restart,
                ..
            })
        ),
        "{frames:?}"
    );
    drop(tls);
    assert!(old.wait_exit(Duration::from_secs(10)).success());
    assert!(new.is_running());
}

#[test]
fn a_flood_of_sigusr2_makes_one_new_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = ServerProcess::start(dir.path(), IDENT, &[]);
    let mut client = identified(old.addr(), "ann");
    for _ in 0..100 {
        old.signal(Signal::SIGUSR2);
        std::thread::sleep(Duration::from_millis(2));
    }
    let (_, reason, _) = replies_then_bye(&mut client);
    assert_eq!(reason, ByeReason::Restart);
    assert!(old.wait_exit(Duration::from_secs(10)).success());
    let log = std::fs::read_to_string(old.log()).unwrap();
    assert_eq!(log.matches("upgrade requested").count(), 1, "{log}");
    let pid = log.split("new_pid=").nth(1).unwrap();
    let digits: String = pid.chars().take_while(char::is_ascii_digit).collect();
    let new = KillOnDrop(digits.parse().unwrap());
    echoes(old.addr());
    assert!(new.is_running());
}

#[test]
fn a_new_process_ready_while_the_old_one_drains_after_sigterm_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, real, mut old) = served_from_a_copy(dir.path());
    let addr = old.addr();
    // Keeps the old process draining a second after SIGTERM, by which time
    // the new one (200 ms late) is ready.
    let _lingering = identified(addr, "slow");
    let body = format!("sleep 0.2; exec {} \"$@\"", real.display());
    replace_with_script(&binary, &body);
    let data = dir.path().join("data");
    let upgrade = std::thread::spawn(move || {
        Command::new(echo_testkit::server_binary())
            .args(["upgrade", "--data-dir"])
            .arg(data)
            .output()
            .unwrap()
    });
    old.wait_for_log("upgrade requested");
    old.signal(Signal::SIGTERM);
    let out = upgrade.join().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        said.contains("shutting down: not upgraded (the new process, pid "),
        "{said}"
    );
    let pid = said.split("pid ").nth(1).unwrap();
    let new = KillOnDrop(pid.split(',').next().unwrap().parse().unwrap());
    assert!(old.wait_exit(Duration::from_secs(15)).success());
    assert!(wait_until(Duration::from_secs(15), || !new.is_running()));
    assert!(refused(addr), "the stopped server's port is served");
}
