//! The `echo-server` binary as a user runs it.
#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    time::Duration,
};

use echo_proto::{
    ByeReason, ClientMsg, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};
use echo_testkit::{ServerProcess, connect_blocking, free_port, identify_blocking};
use nix::sys::signal::Signal;

fn connect(server: &ServerProcess) -> TcpStream {
    connect_blocking(server.addr())
}

fn identify(stream: &mut TcpStream) {
    identify_blocking(stream, "tester");
}

fn log_text(dir: &std::path::Path) -> String {
    for entry in std::fs::read_dir(dir.join("logs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            name.starts_with("log_serv.") && name.ends_with(".txt"),
            "{name}"
        );
    }
    echo_testkit::read_logs(dir)
}

#[test]
fn prints_one_listening_line_and_moves_off_a_busy_port() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let server = ServerProcess::start(
        dir.path(),
        &["--port", &busy.to_string(), "--mode", "ident"],
        &[],
    );
    let moved = server.addr().port();
    assert!(moved > busy);
    // Tests run in parallel: the port after `busy` may be another test's.
    let skipped = match moved - busy {
        1 => format!("port {busy} was busy"),
        _ => format!("ports {busy}-{} were busy", moved - 1),
    };
    assert_eq!(
        server.first_line,
        format!("listening on 127.0.0.1:{moved} ({skipped})")
    );
    let mut stream = connect(&server);
    identify(&mut stream);
    stream
        .send_msg(&ClientMsg::Say {
            id: 1,
            text: "hi".into(),
        })
        .unwrap();
    assert!(matches!(
        stream.recv_msg::<ServerMsg>().unwrap(),
        Some(ServerMsg::Reply { .. })
    ));
}

#[test]
fn a_free_port_is_used_as_asked_without_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = ServerProcess::start(dir.path(), &["--port", &port.to_string()], &[]);
    assert_eq!(server.first_line, format!("listening on 127.0.0.1:{port}"));
}

#[test]
fn sigterm_says_bye_flushes_the_log_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &["--port", "0"], &[]);
    let mut stream = connect(&server);
    let client_addr = stream.local_addr().unwrap();
    assert!(matches!(
        stream.recv_msg::<ServerMsg>().unwrap(),
        Some(ServerMsg::AskAuth { .. })
    ));
    server.signal(Signal::SIGTERM);
    assert_eq!(
        stream.recv_msg::<ServerMsg>().unwrap(),
        Some(ServerMsg::bye(ByeReason::Shutdown))
    );
    drop(stream);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    // Nothing else was printed on the console.
    let mut rest = String::new();
    server.stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");
    let log = log_text(dir.path());
    assert!(log.contains(&format!("peer={client_addr}")), "{log}");
    assert!(log.contains("connected"), "{log}");
    assert!(
        log.contains("disconnected reason=server shutting down"),
        "{log}"
    );
    assert!(
        log.contains("shutdown requested signal=\"SIGTERM\""),
        "{log}"
    );
}

#[test]
fn sigint_stops_it_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &["--port", "0"], &[]);
    server.signal(Signal::SIGINT);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn the_log_records_each_connect_and_disconnect_with_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &["--port", "0"], &[]);
    let mut peers = Vec::new();
    for _ in 0..3 {
        let mut stream = connect(&server);
        peers.push(stream.local_addr().unwrap());
        // Read what the server said, so closing is a clean FIN, not a reset.
        assert!(matches!(
            stream.recv_msg::<ServerMsg>().unwrap(),
            Some(ServerMsg::AskAuth { .. })
        ));
        drop(stream);
    }
    // Every close is logged before the server is stopped.
    let closed = "disconnected reason=client closed the connection";
    echo_testkit::wait_until(Duration::from_secs(10), || {
        log_text(dir.path()).matches(closed).count() >= peers.len()
    });
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let log = log_text(dir.path());
    for peer in peers {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!("peer={peer}")))
            .collect();
        assert!(lines.iter().any(|l| l.ends_with(": connected")), "{log}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("disconnected reason=client closed the connection")),
            "{log}"
        );
    }
}

#[test]
fn flags_beat_environment_which_beats_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let (flag, env, file) = (free_port(), free_port(), free_port());
    let config = dir.path().join("server.toml");
    std::fs::write(&config, format!("port = {file}\nmode = \"ident\"\n")).unwrap();
    let config = config.to_str().unwrap();
    let env_port = env.to_string();
    let env = [("ECHO_SERVER_PORT", env_port.as_str())];

    let server = ServerProcess::start(dir.path(), &["--config", config], &[]);
    assert_eq!(server.addr().port(), file);
    drop(server);
    let server = ServerProcess::start(dir.path(), &["--config", config], &env);
    assert_eq!(server.addr().port(), env_port.parse::<u16>().unwrap());
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    let hello = stream.recv_msg::<ServerMsg>().unwrap().unwrap();
    assert!(matches!(
        hello,
        ServerMsg::Hello {
            mode: echo_proto::Mode::Ident,
            ..
        }
    ));
    drop(server);
    let server = ServerProcess::start(
        dir.path(),
        &["--config", config, "--port", &flag.to_string()],
        &env,
    );
    assert_eq!(server.addr().port(), flag);
}

#[test]
fn a_bad_config_file_is_a_clear_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(&config, "prot = 13131\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .arg("--config")
        .arg(&config)
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains(config.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("prot"), "{stderr}");
}

#[test]
fn without_a_terminal_there_is_no_prompt_and_the_default_port_is_tried() {
    // stdin is /dev/null: no "Port [13131]:" question may appear, and the
    // server starts at once on 13131 or the next free port.
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[], &[]);
    assert!(
        server.first_line.starts_with("listening on 127.0.0.1:"),
        "{}",
        server.first_line
    );
    let port = server.addr().port();
    assert!((13131..=13231).contains(&port), "{port}");
}

#[test]
fn daemon_mode_detaches_and_writes_the_pid_file() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("echo.pid");
    let pid_arg = pid_file.to_str().unwrap();
    let mut server = ServerProcess::start(
        dir.path(),
        &[
            "--port",
            "0",
            "--mode",
            "ident",
            "--daemon",
            "--pid-file",
            pid_arg,
        ],
        &[],
    );
    // The foreground process exits once the daemon is on its own.
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let addr = server.addr();
    let mut pid = String::new();
    for _ in 0..100 {
        pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        if !pid.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = nix::unistd::Pid::from_raw(pid.trim().parse().unwrap());
    let mut stream = connect_blocking(addr);
    identify(&mut stream);
    // A raw text frame: the blocking helpers speak plain text too.
    stream
        .send_text("{\"type\":\"say\",\"id\":1,\"text\":\"daemon\"}")
        .unwrap();
    stream.flush().unwrap();
    assert!(matches!(
        stream.recv_msg::<ServerMsg>().unwrap(),
        Some(ServerMsg::Reply { .. })
    ));
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    assert_eq!(
        stream.recv_msg::<ServerMsg>().unwrap(),
        Some(ServerMsg::bye(ByeReason::Shutdown))
    );
    drop(stream);
    for _ in 0..250 {
        if !pid_file.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the daemon did not remove its pid file on exit");
}

#[test]
fn the_example_config_lists_exactly_the_defaults() {
    use echo_server::{
        ServerConfig,
        config::{FileConfig, RunArgs},
    };
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/server.toml");
    let file = FileConfig::load(std::path::Path::new(path)).unwrap();
    let resolved = ServerConfig::resolve(&RunArgs::default(), file, |_| {
        panic!("the example config names a port; no question is asked")
    })
    .unwrap();
    assert_eq!(resolved, ServerConfig::default());
}

#[test]
fn the_example_config_documents_every_setting() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/server.toml");
    let text = std::fs::read_to_string(path).unwrap();
    // serde names every accepted key when it meets an unknown one.
    let err = echo_server::config::FileConfig::parse("no_such_key = 1").unwrap_err();
    let listed = err.split("expected one of").nth(1).unwrap().to_owned();
    let keys: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
    assert!(keys.len() > 20, "{err}");
    for key in keys {
        let set = format!("\n{key} = ");
        let commented = format!("\n# {key} = ");
        assert!(
            text.contains(&set) || text.contains(&commented),
            "config/server.toml lacks {key}"
        );
    }
}
