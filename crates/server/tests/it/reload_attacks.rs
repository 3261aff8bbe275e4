//! Reloads under attack (#28): a file caught while it is being written, a
//! flood of SIGHUPs, a reload that changes `proxy_protocol_from` while
//! balancer connections are live.
#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use echo_proto::{ServerMsg, ext::BlockingFrameRead};
use echo_testkit::{after_hello_blocking, identify_blocking, wait_until};
use nix::sys::signal::Signal;

use crate::reload::{client, repeat, start, stderr, stdout};

#[test]
fn a_file_caught_while_it_is_written_is_not_taken_half_written() {
    let (_dir, file, server) = start("max_repeat = 50\nidle_timeout = 42\n", &[]);
    let mut held = client(&server);
    // A writer that never finishes: the file grows every 5 ms (each state
    // valid TOML, which a single read would take, dropping idle_timeout).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, file) = (Arc::clone(&stop), file.clone());
        std::thread::spawn(move || {
            let mut text = String::from("max_repeat = 7\n#");
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(20) {
                text.push('.');
                std::fs::write(&file, &text).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let out = server.reload();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("kept changing while it was read"),
        "{}",
        stderr(&out)
    );
    assert_eq!(repeat(&mut held, 50), Ok(50), "nothing changed");
    // Written whole (to another name, renamed over it): taken at once.
    let next = file.with_extension("next");
    std::fs::write(&next, "max_repeat = 7\nidle_timeout = 42\n").unwrap();
    std::fs::rename(&next, &file).unwrap();
    let out = server.reload();
    assert_eq!(stdout(&out), "reloaded:\n  max_repeat: 50 -> 7\n");
    assert_eq!(repeat(&mut held, 7), Ok(7));
}

#[test]
fn a_flood_of_sighups_drops_nobody_and_the_last_file_is_in_force() {
    let (_dir, file, mut server) = start("max_repeat = 50\n", &[]);
    let mut held = client(&server);
    std::fs::write(&file, "max_repeat = 7\n").unwrap();
    let started = Instant::now();
    for n in 0..100 {
        server.signal(Signal::SIGHUP);
        std::thread::sleep(Duration::from_millis(2));
        if n % 10 == 0 {
            assert_eq!(repeat(&mut held, 1), Ok(1));
        }
    }
    let sent = started.elapsed();
    // The flood ends with the file in force, and the client still there.
    assert!(wait_until(Duration::from_secs(10), || repeat(&mut held, 8).is_err()));
    assert_eq!(repeat(&mut held, 7), Ok(7));
    let log = std::fs::read_to_string(server.log()).unwrap();
    let reloads = log.matches("settings reloaded").count();
    println!("100 SIGHUPs in {sent:?}: {reloads} reloads, the client served throughout");
    assert!((1..=100).contains(&reloads), "{reloads}");
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server died"
    );
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
}

/// A connection from the trusted balancer naming client `ip`, past its
/// greeting.
fn via_balancer(port: u16, ip: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let header = format!("PROXY TCP4 {ip} 127.0.0.1 5000 {port}\r\n");
    stream.write_all(header.as_bytes()).unwrap();
    let mut stream = after_hello_blocking(stream);
    identify_blocking(&mut stream, "viabalancer");
    stream
}

#[test]
fn a_reload_that_stops_trusting_the_balancer_keeps_the_connections_it_made() {
    let trusting = "proxy_protocol_from = [\"127.0.0.1/32\"]\n";
    let (_dir, file, server) = start(trusting, &[]);
    let port = server.addr().port();
    let mut live = via_balancer(port, "10.1.1.1");
    // Accepted as the balancer's; its header comes after the reload.
    let mut half = TcpStream::connect(server.addr()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(&file, "proxy_protocol_from = []\n").unwrap();
    let out = server.reload();
    assert!(
        stdout(&out).contains("proxy_protocol_from: 127.0.0.1/32 -> none"),
        "{}",
        stdout(&out)
    );
    assert_eq!(repeat(&mut live, 3), Ok(3));
    let header = format!("PROXY TCP4 10.1.1.2 127.0.0.1 5000 {port}\r\n");
    half.write_all(header.as_bytes()).unwrap();
    let mut half = after_hello_blocking(half);
    identify_blocking(&mut half, "half");
    // From now on a header from 127.0.0.1 is not trusted: closed unanswered;
    // a direct client is served.
    let mut untrusted = TcpStream::connect(server.addr()).unwrap();
    untrusted.write_all(header.as_bytes()).unwrap();
    untrusted
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for _ in 0..2 {
        match untrusted.recv_msg::<ServerMsg>() {
            Ok(Some(ServerMsg::Hello { .. })) => {}
            Ok(None) | Err(_) => break,
            Ok(Some(other)) => panic!("an untrusted header was answered: {other:?}"),
        }
    }
    let mut direct = client(&server);
    assert_eq!(repeat(&mut direct, 1), Ok(1));
    let listed = String::from_utf8_lossy(&server.admin(&["clients"]).stdout).into_owned();
    assert!(listed.contains("10.1.1.1:5000 via"), "{listed}");
    assert!(listed.contains("10.1.1.2:5000 via"), "{listed}");
    // Trusted again: the direct client keeps its connection too.
    std::fs::write(&file, trusting).unwrap();
    assert!(server.reload().status.success());
    assert_eq!(repeat(&mut direct, 2), Ok(2));
    let mut again = via_balancer(port, "10.1.1.3");
    assert_eq!(repeat(&mut again, 1), Ok(1));
}
