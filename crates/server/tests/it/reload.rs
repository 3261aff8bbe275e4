//! Reloading the settings of a running server (`echo-server reload`,
//! SIGHUP): the live ones change for the next message without dropping
//! anyone, a bad file changes nothing, and the ones that need a restart are
//! named and left.

use std::{net::TcpStream, path::PathBuf, process::Output};

use echo_proto::{
    ClientMsg, ErrorCode, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};
use echo_testkit::{ServerProcess, connect_blocking, identify_blocking, wait_until};

/// A server in identification mode started with the config file `text`
/// (and `flags`), its directory and the file.
pub(crate) fn start(text: &str, flags: &[&str]) -> (tempfile::TempDir, PathBuf, ServerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.toml");
    std::fs::write(&file, text).unwrap();
    let file_arg = file.display().to_string();
    let mut args = vec!["--port", "0", "--host", "127.0.0.1", "--mode", "ident"];
    args.extend_from_slice(&["--config", &file_arg]);
    args.extend_from_slice(flags);
    let server = ServerProcess::start(dir.path(), &args, &[]);
    assert!(
        server.first_line.starts_with("listening on "),
        "{}",
        server.first_line
    );
    (dir, file, server)
}

/// A client past its greeting.
pub(crate) fn client(server: &ServerProcess) -> TcpStream {
    let mut stream = connect_blocking(server.addr());
    identify_blocking(&mut stream, "ann");
    stream
}

/// A new client past its greeting, or the code it was refused with.
pub(crate) fn admitted(server: &ServerProcess) -> Result<TcpStream, ErrorCode> {
    let mut stream = connect_blocking(server.addr());
    match stream.recv_msg::<ServerMsg>().unwrap() {
        Some(ServerMsg::AskName {}) => {
            let name = ClientMsg::Name { name: "bob".into() };
            stream.send_msg(&name).unwrap();
            let greeted = stream.recv_msg::<ServerMsg>().unwrap();
            assert!(
                matches!(greeted, Some(ServerMsg::Greet { .. })),
                "{greeted:?}"
            );
            Ok(stream)
        }
        // The address is known (127.0.0.1 is ann's): greeted at once.
        Some(ServerMsg::Greet { .. }) => Ok(stream),
        Some(ServerMsg::Error { code, .. }) => Err(code),
        other => panic!("expected a greeting or a refusal, got {other:?}"),
    }
}

/// `/repeat N x`: how many replies came, or the error's message.
pub(crate) fn repeat(stream: &mut TcpStream, n: u32) -> Result<usize, String> {
    let text = format!("/repeat {n} x");
    stream.send_msg(&ClientMsg::Say { id: 1, text }).unwrap();
    let mut replies = 0;
    loop {
        match stream.recv_msg::<ServerMsg>().unwrap() {
            Some(ServerMsg::Reply { last, .. }) => {
                replies += 1;
                if last {
                    return Ok(replies);
                }
            }
            Some(ServerMsg::Error { message, .. }) => return Err(message),
            other => panic!("expected replies, got {other:?}"),
        }
    }
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_reload_changes_max_repeat_for_a_client_already_connected() {
    let (_dir, file, server) = start("max_repeat = 5\n", &[]);
    let mut ann = client(&server);
    assert_eq!(repeat(&mut ann, 5), Ok(5));
    std::fs::write(&file, "max_repeat = 2\n").unwrap();
    let out = server.reload();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("max_repeat: 5 -> 2"),
        "{}",
        stdout(&out)
    );
    // The same connection: its next message obeys the new value.
    let refused = repeat(&mut ann, 3).unwrap_err();
    assert!(refused.contains("from 1 to 2"), "{refused}");
    assert_eq!(repeat(&mut ann, 2), Ok(2));
    server.wait_for_log("max_repeat: 5 -> 2");
}

#[test]
fn a_file_with_an_error_is_refused_whole_and_nothing_changes() {
    let (_dir, file, server) = start("max_repeat = 5\n", &[]);
    let mut ann = client(&server);
    // A good change beside a bad one: neither is taken.
    std::fs::write(&file, "max_repeat = 2\nidle_timeout = 0\n").unwrap();
    let out = server.reload();
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("nothing changed"), "{err}");
    assert!(err.contains("idle_timeout must be at least 1"), "{err}");
    assert_eq!(repeat(&mut ann, 5), Ok(5), "max_repeat changed anyway");
    // Not TOML at all: the reason names the file.
    std::fs::write(&file, "max_repeat = = 2\n").unwrap();
    let out = server.reload();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("invalid config file") && err.contains("server.toml"),
        "{err}"
    );
    assert_eq!(repeat(&mut ann, 5), Ok(5));
    // A level the log filter cannot take.
    std::fs::write(
        &file,
        "max_repeat = 2\nlog_level = \"info,echo_server=loud\"\n",
    )
    .unwrap();
    let out = server.reload();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid log level"),
        "{}",
        stderr(&out)
    );
    assert_eq!(repeat(&mut ann, 5), Ok(5));
    server.wait_for_log("reload refused; nothing changed");
    // The next good file is taken.
    std::fs::write(&file, "max_repeat = 2\n").unwrap();
    assert!(server.reload().status.success());
    assert!(repeat(&mut ann, 3).is_err());
}

#[test]
fn sighup_reloads_as_the_command_does() {
    let (_dir, file, server) = start("max_repeat = 5\n", &[]);
    let mut ann = client(&server);
    std::fs::write(&file, "max_repeat = 2\n").unwrap();
    server.hangup_and_wait_for("max_repeat: 5 -> 2");
    assert!(repeat(&mut ann, 3).is_err());
    assert_eq!(repeat(&mut ann, 2), Ok(2));
    std::fs::write(&file, "max_repeat = 0\n").unwrap();
    server.hangup_and_wait_for("reload refused; nothing changed");
    assert_eq!(repeat(&mut ann, 2), Ok(2));
}

#[test]
fn restart_only_settings_are_named_and_left_and_flags_still_win() {
    let (_dir, file, server) = start("", &["--idle-timeout", "100"]);
    let mut ann = client(&server);
    let text = "tls = true\nmax_frame = 8192\nidle_timeout = 7\nmax_repeat = 3\n\
                store = \"postgres://echo:hunter2@127.0.0.1:1/echo\"\n";
    std::fs::write(&file, text).unwrap();
    let out = server.reload();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    let (applied, left) = said.split_once("needs a restart").expect(&said);
    assert!(applied.contains("max_repeat: 100 -> 3"), "{said}");
    // Given as a flag at start, the file does not override it.
    assert!(!said.contains("idle_timeout"), "{said}");
    for name in ["tls: false -> true", "max_frame: ", "store: sqlite:"] {
        assert!(left.contains(name), "{name} not named as left: {said}");
    }
    assert!(
        !said.contains("hunter2"),
        "a password in the answer: {said}"
    );
    // Left as they are: still plain TCP, frames over 8192 bytes still read.
    let long = "y".repeat(10_000);
    ann.send_msg(&ClientMsg::Say {
        id: 2,
        text: long.clone(),
    })
    .unwrap();
    match ann.recv_msg::<ServerMsg>().unwrap() {
        Some(ServerMsg::Reply { text, .. }) => assert_eq!(text, long),
        other => panic!("expected the echo, got {other:?}"),
    }
    let mut bob = connect_blocking(server.addr());
    identify_blocking(&mut bob, "bob");
    server.wait_for_log("need a restart were left");
    let log = std::fs::read_to_string(server.log()).unwrap();
    assert!(!log.contains("hunter2"), "a password in the log");
}

#[test]
fn connection_limits_apply_to_new_connections_and_nobody_is_dropped() {
    let (_dir, file, server) = start("max_connections = 2\n", &[]);
    let mut held = vec![client(&server), client(&server)];
    assert_eq!(admitted(&server).err(), Some(ErrorCode::ServerBusy));
    std::fs::write(&file, "max_connections = 3\n").unwrap();
    let out = server.reload();
    assert!(
        stdout(&out).contains("max_connections: 2 -> 3"),
        "{}",
        stdout(&out)
    );
    held.push(admitted(&server).unwrap());
    // Lowered under what is held: the three stay, nobody new gets in.
    std::fs::write(&file, "max_connections = 1\nmax_connections_per_ip = 1\n").unwrap();
    assert!(server.reload().status.success());
    for stream in &mut held {
        assert_eq!(repeat(stream, 1), Ok(1));
    }
    assert_eq!(admitted(&server).err(), Some(ErrorCode::ServerBusy));
    drop(held);
    let mut next = None;
    wait_until(std::time::Duration::from_secs(5), || {
        next = admitted(&server).ok();
        next.is_some()
    });
    let mut one = next.expect("a place once the others left");
    assert_eq!(repeat(&mut one, 1), Ok(1));
    // The one place, and max_connections_per_ip = 1 for the address.
    std::fs::write(&file, "max_connections_per_ip = 1\n").unwrap();
    assert!(server.reload().status.success());
    let refused = admitted(&server).err();
    assert_eq!(refused, Some(ErrorCode::TooManyConnections));
}
