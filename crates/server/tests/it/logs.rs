//! The log as an operator reads it: `log_serv.txt` to follow, the start
//! line, one line per connection with what it did, and JSON lines.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use echo_proto::{
    ClientMsg, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};
use echo_testkit::{ServerProcess, connect_blocking, identify_blocking, read_logs};
use nix::sys::signal::Signal;

/// Starts the binary in identification mode, runs one client through two
/// `say`s, stops the server, and returns the log.
fn one_conversation(dir: &std::path::Path, extra: &[&str]) -> String {
    let mut args = vec!["--port", "0", "--mode", "ident"];
    args.extend_from_slice(extra);
    let mut server = ServerProcess::start(dir, &args, &[]);
    let mut stream = connect_blocking(server.addr());
    identify_blocking(&mut stream, "ann");
    for id in 1..=2 {
        let say = ClientMsg::Say {
            id,
            text: "hello".into(),
        };
        stream.send_msg(&say).unwrap();
        assert!(matches!(
            stream.recv_msg::<ServerMsg>().unwrap(),
            Some(ServerMsg::Reply { .. })
        ));
    }
    // An unknown command is answered with an error and logged at info.
    let unknown = ClientMsg::Say {
        id: 3,
        text: "/nope".into(),
    };
    stream.send_msg(&unknown).unwrap();
    assert!(matches!(
        stream.recv_msg::<ServerMsg>().unwrap(),
        Some(ServerMsg::Error { .. })
    ));
    drop(stream);
    // The close is logged before the server is stopped.
    echo_testkit::wait_until(Duration::from_secs(10), || {
        read_logs(dir).contains("disconnected")
    });
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    read_logs(dir)
}

#[test]
fn log_serv_txt_leads_to_the_current_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = one_conversation(dir.path(), &[]);
    let link = dir.path().join("logs/log_serv.txt");
    let target = std::fs::read_link(&link).unwrap();
    let target = target.to_str().unwrap();
    assert!(
        target.starts_with("log_serv.") && target.len() == "log_serv.YYYY-MM-DD.txt".len(),
        "{target}"
    );
    assert_eq!(std::fs::read_to_string(&link).unwrap(), log);
}

#[test]
fn the_start_line_and_one_line_per_connection_say_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let log = one_conversation(dir.path(), &[]);
    let start = log.lines().next().unwrap();
    let data = std::path::absolute(dir.path().join("data")).unwrap();
    for field in [
        "echo-server starting".to_owned(),
        format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        "pid=".to_owned(),
        "mode=ident".to_owned(),
        format!("data_dir={}", data.display()),
    ] {
        assert!(start.contains(&field), "{field} missing from {start}");
    }
    assert!(
        log.lines()
            .any(|l| l.contains(" INFO ") && l.contains("bad command") && l.contains("/nope")),
        "{log}"
    );
    let ended: Vec<&str> = log.lines().filter(|l| l.contains("disconnected")).collect();
    assert_eq!(ended.len(), 1, "{log}");
    for field in [
        "duration_ms=",
        "messages=3",
        "bytes_in=",
        "bytes_out=",
        "user=ann",
    ] {
        assert!(
            ended[0].contains(field),
            "{field} missing from {}",
            ended[0]
        );
    }
    // The id in the span is 8 hex digits, not a UUID.
    let id = ended[0].split("id=").nth(1).unwrap();
    assert!(id.chars().take(8).all(|c| c.is_ascii_hexdigit()) && id.as_bytes()[8] == b' ');
    assert!(!log.contains("state state="), "state lines are debug now");
    // No Rust debug format, and the listening line once.
    assert!(!log.contains("Some(") && !log.contains("File(\""), "{log}");
    assert_eq!(log.matches("listening on").count(), 1, "{log}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = one_conversation(dir.path(), &["--log-format", "json"]);
    let mut disconnected = 0;
    for line in log.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        if event["fields"]["message"] == "disconnected" {
            disconnected += 1;
            assert_eq!(event["fields"]["messages"], 3);
            assert_eq!(event["span"]["user"], "ann");
        }
    }
    assert_eq!(disconnected, 1, "{log}");
}

/// A log line's shape: its level, span (name and keys), message and keys,
/// without the values.
fn shape(line: &str) -> String {
    let mut words = line.split_whitespace().skip(1); // the timestamp
    let level = words.next().unwrap_or_default();
    let rest: Vec<&str> = words.collect();
    let rest = rest.join(" ");
    let (span, body) = match rest.split_once("}: ") {
        Some((span, body)) => (span, body),
        None => ("", rest.as_str()),
    };
    let is_key = |word: &&str| {
        word.split_once('=').is_some_and(|(key, _)| {
            !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
    };
    let span_keys: Vec<&str> = span
        .split(['{', ' '])
        .map(|word| word.split('=').next().unwrap_or_default())
        .collect();
    // Numbers in the message (an address, a port) vary from run to run.
    let message: Vec<String> = body
        .split(' ')
        .take_while(|w| !is_key(w))
        .map(|w| {
            w.split(|c: char| c.is_ascii_digit())
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join("#")
        })
        .collect();
    let keys: Vec<&str> = body
        .split(' ')
        .filter(is_key)
        .map(|w| w.split('=').next().unwrap_or_default())
        .collect();
    format!("{level} {span_keys:?} {message:?} {keys:?}")
}

#[test]
fn the_readme_sample_log_lines_are_lines_the_server_writes() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme.split("### Logs").nth(1).unwrap();
    let sample: Vec<&str> = section
        .split("```")
        .nth(1)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(sample.len() >= 4, "{sample:?}");

    // What the sample shows: a user registered earlier logs in, talks and
    // logs out.
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &["--port", "0"], &[]);
    let authenticate = |hello: ClientMsg| {
        let mut stream = connect_blocking(server.addr());
        let asked = stream.recv_msg::<ServerMsg>().unwrap();
        assert!(
            matches!(asked, Some(ServerMsg::AskAuth { .. })),
            "{asked:?}"
        );
        stream.send_msg(&hello).unwrap();
        let answer = stream.recv_msg::<ServerMsg>().unwrap();
        assert!(
            matches!(answer, Some(ServerMsg::Welcome { .. })),
            "{answer:?}"
        );
        stream
    };
    drop(authenticate(echo_testkit::register(
        "ann",
        echo_testkit::PASSWORD,
    )));
    let mut stream = authenticate(echo_testkit::login("ann", echo_testkit::PASSWORD));
    stream
        .send_msg(&ClientMsg::Say {
            id: 1,
            text: "hello".into(),
        })
        .unwrap();
    assert!(matches!(
        stream.recv_msg::<ServerMsg>().unwrap(),
        Some(ServerMsg::Reply { .. })
    ));
    stream.send_msg(&ClientMsg::Logout {}).unwrap();
    echo_testkit::wait_until(Duration::from_secs(10), || {
        read_logs(dir.path()).contains("reason=logged out")
    });
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let log = read_logs(dir.path());
    let written: Vec<String> = log.lines().map(shape).collect();
    for line in sample {
        assert!(
            written.contains(&shape(line)),
            "the README's sample line\n  {line}\nis not one the server writes:\n{log}"
        );
    }
}
