//! Reloads under attack (#28): a file caught while it is being written, a
//! flood of SIGHUPs, a reload that changes `proxy_protocol_from` while
//! balancer connections are live.
#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    net::TcpStream,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use echo_proto::{ServerMsg, ext::BlockingFrameRead};
use echo_testkit::{after_hello_blocking, identify_blocking, wait_until};
use nix::sys::signal::Signal;

use crate::reload::{client, repeat, start, stderr, stdout};

/// Writes `file` in place over and over, growing, every 5 ms, until
/// `stop` (at most 20 s); each state is valid TOML, which a single read
/// would take (dropping `idle_timeout`). The longest time between two
/// writes: a writer the machine held back longer than a reload's pause
/// looks like a file written whole.
fn keep_writing(file: PathBuf, stop: Arc<AtomicBool>) -> JoinHandle<Duration> {
    std::thread::spawn(move || {
        let mut text = String::from("max_repeat = 7\n#");
        let started = Instant::now();
        let (mut last, mut longest) = (Instant::now(), Duration::ZERO);
        while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(20) {
            text.push('.');
            std::fs::write(&file, &text).unwrap();
            longest = longest.max(last.elapsed());
            last = Instant::now();
            std::thread::sleep(Duration::from_millis(5));
        }
        longest
    })
}

/// Puts `text` in place of `file` whole (written to another name, then
/// renamed over it), as an operator should.
fn replace_whole(file: &Path, text: &str) {
    let next = file.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, file).unwrap();
}

#[test]
fn a_file_caught_while_it_is_written_is_not_taken_half_written() {
    let settings = "max_repeat = 50\nidle_timeout = 42\n";
    let (_dir, file, server) = start(settings, &[]);
    let mut held = client(&server);
    // At most 3 tries: one where the machine held the writer back more
    // than 80 ms (under the reload's 100 ms pause) proves nothing.
    for attempt in 1..=3 {
        let stop = Arc::new(AtomicBool::new(false));
        let writer = keep_writing(file.clone(), Arc::clone(&stop));
        let out = server.reload();
        stop.store(true, Ordering::Relaxed);
        let longest = writer.join().unwrap();
        if longest < Duration::from_millis(80) {
            assert!(!out.status.success(), "{}", stdout(&out));
            let said = stderr(&out);
            assert!(said.contains("kept changing while it was read"), "{said}");
            assert_eq!(repeat(&mut held, 50), Ok(50), "nothing changed");
            break;
        }
        assert!(
            attempt < 3,
            "the writer was held back {longest:?} three times"
        );
        replace_whole(&file, settings);
        assert!(server.reload().status.success());
    }
    // Written whole: taken at once.
    replace_whole(&file, "max_repeat = 7\nidle_timeout = 42\n");
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

#[test]
fn a_fifo_or_a_huge_file_in_place_of_the_config_is_refused_and_holds_nothing() {
    let (dir, file, mut server) = start("max_repeat = 50\n", &[]);
    let mut held = client(&server);
    std::fs::remove_file(&file).unwrap();
    let made = std::process::Command::new("mkfifo").arg(&file).status();
    assert!(made.unwrap().success());
    // Before, the reload opened the FIFO and waited for a writer forever:
    // this reload, every one after it, and the process's exit.
    let data = dir.path().join("data");
    let port = server.addr().port().to_string();
    let reload = move || {
        std::process::Command::new(echo_testkit::server_binary())
            .args(["reload", "--port", &port, "--data-dir"])
            .arg(&data)
            .output()
            .unwrap()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let again = reload.clone();
    std::thread::spawn(move || tx.send(again()));
    let out = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the reload hung");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&file).unwrap();
    std::fs::write(&file, "#".repeat(2 << 20)).unwrap();
    let out = reload();
    assert!(
        stderr(&out).contains("larger than 1024 KiB"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&file, "max_repeat = 7\n").unwrap();
    assert_eq!(stdout(&reload()), "reloaded:\n  max_repeat: 50 -> 7\n");
    assert_eq!(repeat(&mut held, 7), Ok(7));
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
}
