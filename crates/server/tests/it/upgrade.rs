//! `echo-server upgrade` and SIGUSR2 on the real binary: a new process of
//! the binary at the server's path takes the port over without it ever
//! refusing a connection; each client of the old one gets what it asked
//! for, then `bye {restart}`; a new binary that fails leaves the old one
//! serving (`upgrade_failures.rs`). Also systemd's side: `MAINPID=` across
//! an upgrade, and `LISTEN_FDS` socket activation.
#![allow(clippy::unwrap_used)]

use std::{
    net::{SocketAddr, TcpStream},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use echo_proto::{
    ByeReason, ClientMsg, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};
use echo_testkit::{
    KillOnDrop, ServerProcess, after_hello_blocking, binary_copy, cluster_script::http_get,
    connect_blocking, free_port, identify_blocking, server_binary, wait_until,
};
use nix::sys::signal::Signal;

pub(crate) const IDENT: &[&str] = &["--port", "0", "--host", "127.0.0.1", "--mode", "ident"];

/// A server run from a copy of the binary in `dir` (the file an upgrade
/// starts again, for the test to replace), and a second copy,
/// `echo-server.real`, for a replacement script to run: the copy's path,
/// the second one's, and the server.
pub(crate) fn served_from_a_copy(dir: &Path) -> (PathBuf, PathBuf, ServerProcess) {
    let binary = binary_copy(dir);
    let real = dir.join("echo-server.real");
    std::fs::copy(&binary, &real).unwrap();
    let server = ServerProcess::start_command(Command::new(&binary), dir, IDENT, &[]);
    (binary, real, server)
}

/// An identified connection to `addr`.
pub(crate) fn identified(addr: SocketAddr, name: &str) -> TcpStream {
    let mut stream = connect_blocking(addr);
    identify_blocking(&mut stream, name);
    stream
}

pub(crate) fn say(stream: &mut TcpStream, id: u64, text: &str) {
    let text = text.to_owned();
    stream.send_msg(&ClientMsg::Say { id, text }).unwrap();
}

/// Reads frames until `bye`: the replies' texts before it, and its reason
/// and `retry_after_ms`. The connection must close after it.
pub(crate) fn replies_then_bye(stream: &mut TcpStream) -> (Vec<String>, ByeReason, Option<u64>) {
    let mut replies = Vec::new();
    loop {
        match stream.recv_msg::<ServerMsg>().unwrap() {
            Some(ServerMsg::Reply { text, .. }) => replies.push(text),
            Some(ServerMsg::Bye {
                reason,
                retry_after_ms,
                ..
            }) => {
                assert!(stream.recv_frame().unwrap().is_none(), "open after bye");
                return (replies, reason, retry_after_ms);
            }
            other => panic!("expected a reply or bye, got {other:?}"),
        }
    }
}

/// Echoes one message on a fresh connection: the port is served.
pub(crate) fn echoes(addr: SocketAddr) {
    let mut stream = identified(addr, "later");
    say(&mut stream, 1, "still here");
    match stream.recv_msg::<ServerMsg>().unwrap() {
        Some(ServerMsg::Reply { text, .. }) => assert_eq!(text, "still here"),
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// Connects to `addr` over and over (every 5 ms, at most 2000 times or
/// 30 s) until stopped; each connection must be accepted (its `hello`
/// read). How many were made.
fn keep_connecting(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<usize> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut made = 0;
        while !stop.load(Ordering::Relaxed) && made < 2000 {
            assert!(started.elapsed() < Duration::from_secs(30));
            let stream = TcpStream::connect(addr)
                .unwrap_or_else(|err| panic!("connection {made} refused: {err}"));
            after_hello_blocking(stream);
            made += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        made
    })
}

/// The new pid in `upgrade`'s output, `upgraded: pid N serves port P; ...`.
fn new_pid(output: &str) -> u32 {
    let rest = output.strip_prefix("upgraded: pid ").unwrap();
    rest.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn upgrade_hands_the_port_over_and_each_client_gets_bye_restart_after_its_replies() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = ServerProcess::start(dir.path(), IDENT, &[]);
    let (addr, old_pid) = (old.addr(), old.child.id());
    let mut quiet = identified(addr, "quiet");
    // 100 replies of 60 kB, unread: the server waits for this client to
    // take them while the upgrade happens, and must finish them all.
    let mut busy = identified(addr, "busy");
    let long = "x".repeat(60_000);
    say(&mut busy, 7, &format!("/repeat 100 {long}"));
    let stop = Arc::new(AtomicBool::new(false));
    let connector = keep_connecting(addr, Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(100));

    let out = old.admin(&["upgrade"]);
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = KillOnDrop(new_pid(&printed));
    assert_ne!(new.0, old_pid);
    assert!(
        printed.contains(&format!("port {}", addr.port())),
        "{printed}"
    );

    let (replies, reason, retry) = replies_then_bye(&mut quiet);
    assert_eq!(
        (replies.len(), reason, retry),
        (0, ByeReason::Restart, Some(0))
    );
    let (replies, reason, _) = replies_then_bye(&mut busy);
    assert_eq!(replies.len(), 100, "every reply asked for before the bye");
    assert!(replies.iter().all(|text| *text == long));
    assert_eq!(reason, ByeReason::Restart);
    assert!(old.wait_exit(Duration::from_secs(10)).success());

    // Still accepting after the old process is gone: the new one serves.
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    // At least a few, however loaded the machine (each is a connect and a
    // `hello` read, every 5 ms).
    assert!(connector.join().unwrap() > 3);
    echoes(addr);
    assert!(new.is_running());
}

#[test]
fn sigusr2_upgrades_and_the_new_process_reports_its_pid_to_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let systemd = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let env = [("NOTIFY_SOCKET", notify.to_str().unwrap())];
    let metrics = free_port();
    let mut args = IDENT.to_vec();
    let metrics_addr = format!("127.0.0.1:{metrics}");
    args.extend(["--metrics-addr", &metrics_addr]);
    let mut old = ServerProcess::start(dir.path(), &args, &env);
    let mut client = identified(old.addr(), "ann");
    let mut datagram = [0; 256];
    let mut next = || {
        let len = systemd.recv(&mut datagram).unwrap();
        String::from_utf8_lossy(&datagram[..len]).into_owned()
    };
    assert_eq!(next(), "READY=1");

    old.signal(Signal::SIGUSR2);
    let (_, reason, _) = replies_then_bye(&mut client);
    assert_eq!(reason, ByeReason::Restart);
    assert!(old.wait_exit(Duration::from_secs(10)).success());
    let said = [next(), next()];
    let new_pid = said
        .iter()
        .find_map(|text| text.strip_prefix("MAINPID="))
        .and_then(|rest| rest.lines().next())
        .unwrap()
        .parse::<u32>()
        .unwrap();
    let new = KillOnDrop(new_pid);
    assert!(
        said.contains(&format!("MAINPID={new_pid}\nREADY=1")),
        "{said:?}"
    );
    assert_ne!(new.0, old.child.id());
    echoes(old.addr());
    // The metrics port was handed over too: the new process answers it.
    assert_eq!(http_get(metrics, "/healthz").unwrap().0, 200);
}

#[test]
fn a_server_started_by_socket_activation_serves_the_socket_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // systemd's way: the socket as fd 3, LISTEN_PID the server's own pid
    // (bash: dash takes only one-digit descriptors).
    let inherited = nix::unistd::dup(&listener).unwrap();
    let fd = inherited.as_raw_fd();
    let script = format!("exec 3<&{fd} {fd}<&-; LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"");
    let mut command = Command::new("bash");
    command.arg("-c").arg(script).arg(server_binary());
    let server = ServerProcess::start_command(command, dir.path(), IDENT, &[]);
    drop((inherited, listener));
    assert_eq!(server.first_line, format!("listening on 127.0.0.1:{port}"));
    echoes(server.addr());
    assert!(wait_until(Duration::from_secs(5), || dir
        .path()
        .join(format!("data/control.{port}.sock"))
        .exists()));
}

#[test]
fn a_daemon_upgrades_and_its_pid_file_names_the_new_process() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("echo.pid");
    let mut args = IDENT.to_vec();
    args.extend(["--daemon", "--pid-file", pid_file.to_str().unwrap()]);
    let mut started = ServerProcess::start(dir.path(), &args, &[]);
    assert!(started.wait_exit(Duration::from_secs(10)).success());
    // Written once the detached server is ready.
    assert!(wait_until(Duration::from_secs(10), || pid_file.exists()));
    let read_pid = || -> u32 {
        std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let old = KillOnDrop(read_pid());
    let mut client = identified(started.addr(), "ann");

    let out = started.admin(&["upgrade"]);
    assert!(out.status.success(), "{out:?}");
    let new = KillOnDrop(new_pid(&String::from_utf8_lossy(&out.stdout)));
    let (_, reason, _) = replies_then_bye(&mut client);
    assert_eq!(reason, ByeReason::Restart);
    assert!(wait_until(Duration::from_secs(10), || !old.is_running()));
    // The old process left the pid file alone: it names the new one, which
    // did not detach again.
    assert_eq!(read_pid(), new.0);
    assert!(new.is_running());
    echoes(started.addr());
}

#[test]
fn the_old_server_finishes_draining_when_the_new_one_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = ServerProcess::start(dir.path(), IDENT, &[]);
    let addr = old.addr();
    let mut busy = identified(addr, "busy");
    let long = "y".repeat(60_000);
    say(&mut busy, 1, &format!("/repeat 100 {long}"));
    std::thread::sleep(Duration::from_millis(100));
    let out = old.admin(&["upgrade"]);
    assert!(out.status.success(), "{out:?}");
    let new = KillOnDrop(new_pid(&String::from_utf8_lossy(&out.stdout)));

    drop(new);
    let (replies, reason, _) = replies_then_bye(&mut busy);
    assert_eq!((replies.len(), reason), (100, ByeReason::Restart));
    assert!(old.wait_exit(Duration::from_secs(10)).success());
    // Nobody holds the port now: it refuses until a supervisor (systemd,
    // scripts/cluster.sh) starts a server again.
    assert!(TcpStream::connect(addr).is_err());
}
