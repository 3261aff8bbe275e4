//! `echo-server upgrade` behind a real HAProxy that sends the PROXY
//! protocol (`send-proxy`, v1) (#28): the new process trusts the balancer as
//! the old one did, so a client that resumes through HAProxy is known by
//! its own address, not the balancer's. SQLite store: no PostgreSQL needed.
#![allow(clippy::unwrap_used)]

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use echo_proto::{
    ByeReason, ClientMsg, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};
use echo_testkit::{KillOnDrop, ServerProcess, cluster::dial_from, free_port, haproxy::haproxy};

/// HAProxy in the foreground on a free port, in front of `server` with
/// `send-proxy`; killed when dropped.
struct Balancer {
    child: Child,
    port: u16,
    _config: tempfile::TempDir,
}

impl Balancer {
    fn start(server: u16) -> Option<Self> {
        let binary = haproxy()?;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
             frontend echo\n  bind 127.0.0.1:{port}\n  default_backend servers\n\
             backend servers\n  server s1 127.0.0.1:{server} send-proxy\n"
        );
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let child = Command::new(binary)
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let up = echo_testkit::wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "HAProxy did not listen");
        Some(Self {
            child,
            port,
            _config: dir,
        })
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Through the balancer from `source`: the greeting (`name`, `known`),
/// answering `ask_name` with `name` if asked.
fn greeted(lb: u16, source: &str, name: &str) -> (std::net::TcpStream, String, bool) {
    let addr = format!("127.0.0.1:{lb}").parse().unwrap();
    let mut stream = dial_from(source, addr);
    loop {
        match stream.recv_msg::<ServerMsg>().unwrap() {
            Some(ServerMsg::AskName {}) => {
                let name = name.to_owned();
                stream.send_msg(&ClientMsg::Name { name }).unwrap();
            }
            Some(ServerMsg::Greet { name, known }) => return (stream, name, known),
            other => panic!("expected a greeting, got {other:?}"),
        }
    }
}

#[test]
fn behind_haproxy_the_new_process_trusts_the_balancer_and_knows_clients_by_their_address() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--mode",
        "ident",
        "--proxy-protocol-from",
        "127.0.0.1/32",
    ];
    let mut old = ServerProcess::start(dir.path(), &args, &[]);
    let Some(balancer) = Balancer::start(old.addr().port()) else {
        return;
    };
    let lb = balancer.port;
    let (mut far, _, known) = greeted(lb, "127.0.0.2", "Far");
    assert!(!known);
    let out = old.admin(&["upgrade"]);
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let rest = printed.strip_prefix("upgraded: pid ").unwrap();
    let new = KillOnDrop(rest.split(' ').next().unwrap().parse().unwrap());
    match far.recv_msg::<ServerMsg>().unwrap() {
        Some(ServerMsg::Bye { reason, .. }) => assert_eq!(reason, ByeReason::Restart),
        other => panic!("expected bye restart, got {other:?}"),
    }
    drop(far);
    assert!(old.wait_exit(Duration::from_secs(10)).success());
    // Back through HAProxy to the new process: its own address, its name.
    let (_far, name, known) = greeted(lb, "127.0.0.2", "Wrong");
    assert_eq!((name.as_str(), known), ("Far", true));
    // Another address is another client, not the balancer's.
    let (_near, name, known) = greeted(lb, "127.0.0.3", "Near");
    assert_eq!((name.as_str(), known), ("Near", false));
    let listed = String::from_utf8_lossy(&old.admin(&["clients"]).stdout).into_owned();
    assert!(listed.contains("127.0.0.2:"), "{listed}");
    assert!(listed.contains(" via 127.0.0.1:"), "{listed}");
    assert!(new.is_running());
}
