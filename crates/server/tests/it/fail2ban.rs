//! `config/fail2ban/filter.d/echo-server.conf` on a real log: the binary
//! behind a (pretend) balancer sending the PROXY protocol sees failed
//! logins and bad tokens from known client addresses, and `fail2ban-regex`
//! finds exactly those, each at its client's address and at the right time,
//! in both log formats; successes and a user name forging an address do not
//! count against anyone else. Skipped without `fail2ban-regex` unless
//! `ECHO_TEST_FAIL2BAN=require`.
#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    io::Write,
    net::{SocketAddr, TcpStream},
    path::Path,
    process::Command,
    time::{Duration, SystemTime},
};

use echo_proto::{
    ClientMsg, Secret, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};
use echo_testkit::{
    PASSWORD, ServerProcess, after_hello_blocking, login, read_logs, register, resume,
    tools::{fail2ban_regex, workspace_root},
    wait_until,
};
use nix::sys::signal::Signal;

/// A user name that tries to put another address where the filter reads
/// one, in either format.
const FORGER: &str =
    "x}: login failed peer=192.0.2.66:1 \",\"span\":{\"id\":\"1\",\"peer\":\"192.0.2.66:1\"";

/// Connects as `client` through the PROXY protocol, waits for `ask_auth`,
/// sends `msg` and returns the answer.
fn attempt(addr: SocketAddr, client: &str, msg: &ClientMsg) -> ServerMsg {
    let mut stream = TcpStream::connect(addr).unwrap();
    let (family, to) = match client.contains(':') {
        true => ("TCP6", "::1"),
        false => ("TCP4", "127.0.0.1"),
    };
    let header = format!("PROXY {family} {client} {to} 40000 {}\r\n", addr.port());
    stream.write_all(header.as_bytes()).unwrap();
    let mut stream = after_hello_blocking(stream);
    let asked = stream.recv_msg::<ServerMsg>().unwrap();
    assert!(
        matches!(asked, Some(ServerMsg::AskAuth { .. })),
        "{asked:?}"
    );
    stream.send_msg(msg).unwrap();
    stream.recv_msg::<ServerMsg>().unwrap().unwrap()
}

fn welcomed(answer: ServerMsg) -> Secret {
    match answer {
        ServerMsg::Welcome { token, .. } => token,
        other => panic!("expected welcome, got {other:?}"),
    }
}

fn refused(answer: ServerMsg) {
    assert!(matches!(answer, ServerMsg::Error { .. }), "{answer:?}");
}

/// Runs the binary in `format` with successes and known failures; returns
/// the failures expected per client address.
fn make_log(dir: &Path, format: &str) -> BTreeMap<String, usize> {
    let config = dir.join("server.toml");
    std::fs::write(&config, "allow_plaintext_auth = true\n").unwrap();
    let config = config.display().to_string();
    let args = [
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--mode",
        "auth",
        "--log-format",
        format,
        "--proxy-protocol-from",
        "127.0.0.1/32",
        "--config",
        &config,
    ];
    let mut server = ServerProcess::start(dir, &args, &[]);
    let addr = server.addr();
    // Successes: a registration, a login, a resume.
    let first = welcomed(attempt(addr, "192.0.2.10", &register("ann", PASSWORD)));
    welcomed(attempt(addr, "203.0.113.7", &login("ann", PASSWORD)));
    welcomed(attempt(addr, "192.0.2.10", &resume(&first)));
    // Failures: wrong passwords, unknown tokens, a rotated-away token.
    for user in ["ann", "ghost", "nobody", FORGER] {
        refused(attempt(
            addr,
            "203.0.113.7",
            &login(user, "not the password at all"),
        ));
    }
    refused(attempt(
        addr,
        "2001:db8::9",
        &login("ann", "guess guess guess"),
    ));
    for token in ["00", "ff"] {
        let unknown = ClientMsg::Resume {
            token: Secret::new(token),
        };
        refused(attempt(addr, "198.51.100.4", &unknown));
    }
    refused(attempt(addr, "198.51.100.4", &resume(&first)));
    wait_until(Duration::from_secs(10), || {
        read_logs(dir).matches("disconnected").count() == 11
    });
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    [("198.51.100.4", 3), ("2001:db8::9", 1), ("203.0.113.7", 4)]
        .into_iter()
        .map(|(ip, n)| (ip.to_owned(), n))
        .collect()
}

/// What fail2ban-regex matches in `log`: each match's address and time.
fn matched(fail2ban_regex: &Path, log: &Path) -> Vec<(String, f64)> {
    let filter = workspace_root().join("config/fail2ban/filter.d/echo-server.conf");
    let out = Command::new(fail2ban_regex)
        .args(["-o", "row"])
        .arg(log)
        .arg(filter)
        // Times must be read as UTC whatever the machine's zone.
        .env("TZ", "JST-9")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Rows read: ['203.0.113.7',\t1796623463,\t{...}],
    stdout
        .lines()
        .filter_map(|row| row.strip_prefix("['"))
        .map(|row| {
            let (ip, rest) = row.split_once("',").unwrap();
            let time = rest.trim().split(',').next().unwrap().parse().unwrap();
            (ip.to_owned(), time)
        })
        .collect()
}

fn the_filter_counts_each_failure_at_its_client(format: &str) {
    let Some(fail2ban_regex) = fail2ban_regex() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let expected = make_log(dir.path(), format);
    let log = dir.path().join("logs/log_serv.txt");
    let text = std::fs::read_to_string(&log).unwrap();
    for success in ["registered", "logged in", "session resumed"] {
        assert!(text.contains(success), "{success} missing from:\n{text}");
    }
    let rows = matched(&fail2ban_regex, &log);
    let mut counted = BTreeMap::new();
    for (ip, _) in &rows {
        *counted.entry(ip.clone()).or_insert(0) += 1;
    }
    assert_eq!(counted, expected, "{format} log:\n{text}");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for (ip, time) in rows {
        assert!((now - time).abs() < 300.0, "{ip} at {time}, now is {now}");
    }
}

#[test]
fn the_filter_counts_each_failure_at_its_client_in_the_text_log() {
    the_filter_counts_each_failure_at_its_client("text");
}

#[test]
fn the_filter_counts_each_failure_at_its_client_in_the_json_log() {
    the_filter_counts_each_failure_at_its_client("json");
}
