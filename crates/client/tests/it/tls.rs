//! TLS end to end with the real binaries: trust on first use, a changed
//! key after SIGHUP, a private CA, plain/TLS mismatches, protected mode and
//! the REPL's question on a pseudo-terminal.
#![allow(clippy::unwrap_used)]

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::Duration,
};

use crate::pipe::{CLIENT, stderr, stdout};
use echo_proto::{
    ClientMsg, ErrorCode, Secret, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};
use echo_testkit::{
    ServerProcess,
    certs::{write_ca_signed, write_self_signed},
};

/// Runs `echo-client` one-shot over TLS against `server` as `user` (in
/// identification mode), with its state in `dir`.
fn say(server: &ServerProcess, dir: &Path, extra: &[&str], text: &str) -> Output {
    Command::new(CLIENT)
        .args(["--host", "127.0.0.1", "--port", &server.port().to_string()])
        .arg("--token-file")
        .arg(dir.join("state/tokens.json"))
        .args(["--user", "tess"])
        .args(extra)
        .arg(text)
        .env_remove("ECHO_CLIENT_TLS")
        .env_remove("ECHO_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn first_use_records_the_key_later_uses_are_silent_and_a_changed_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    write_self_signed(&cert, &key);
    let server = ServerProcess::launch(&["--tls", "--mode", "ident"], Some((&cert, &key)));
    let first_key = server.fingerprint().unwrap();
    let known = dir.path().join("state/known_hosts");
    let line = format!("127.0.0.1:{} {first_key}", server.port());

    // One-shot mode is strict by default: refused, and told how to accept.
    let out = say(&server, dir.path(), &["--tls"], "hi");
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains(&first_key), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--trust accept-new"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains(&line), "{}", stderr(&out));
    assert!(!known.exists());

    let out = say(
        &server,
        dir.path(),
        &["--tls", "--trust", "accept-new"],
        "hi",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi\n");
    assert_eq!(
        std::fs::read_to_string(&known).unwrap(),
        format!("{line}\n")
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&known).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Known now: nothing asked, nothing said.
    let out = say(&server, dir.path(), &["--tls"], "again");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        (stdout(&out).as_str(), stderr(&out).as_str()),
        ("again\n", "")
    );

    // A bad pair on SIGHUP is logged and the old one kept.
    std::fs::write(&cert, "not a certificate").unwrap();
    server.hangup_and_wait_for("TLS certificate not reloaded");
    let out = say(&server, dir.path(), &["--tls"], "still");
    assert!(out.status.success(), "{}", stderr(&out));

    // A new key on SIGHUP: served to new connections, and refused as changed.
    std::fs::remove_file(&cert).unwrap();
    std::fs::remove_file(&key).unwrap();
    write_self_signed(&cert, &key);
    server.hangup_and_wait_for("TLS certificate reloaded");
    let out = say(
        &server,
        dir.path(),
        &["--tls", "--trust", "accept-new"],
        "hi",
    );
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("HAS CHANGED"), "{err}");
    assert!(err.contains(&first_key), "{err}");
    let new_key = ServerProcess::tls_fingerprint_command(&cert, &key);
    assert_ne!(new_key, first_key);
    assert!(err.contains(&new_key), "{err}");
    assert!(
        err.contains(&known.display().to_string()) && err.contains("line 1"),
        "{err}"
    );
    // Nothing was recorded over the old key.
    assert_eq!(
        std::fs::read_to_string(&known).unwrap(),
        format!("{line}\n")
    );
}

#[test]
fn a_private_ca_is_trusted_alone_and_the_host_name_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    write_ca_signed(&ca, &[(&cert, &key, &["localhost", "127.0.0.1"])]);
    let server = ServerProcess::launch(&["--tls", "--mode", "ident"], Some((&cert, &key)));
    let ca_arg = ca.to_str().unwrap();
    let out = say(
        &server,
        dir.path(),
        &["--tls", "--ca-file", ca_arg],
        "signed",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "signed\n");
    assert!(!dir.path().join("state/known_hosts").exists());

    // The same CA, a certificate for another name.
    let other = tempfile::tempdir().unwrap();
    let ca2 = other.path().join("ca.pem");
    let (cert2, key2) = (other.path().join("cert.pem"), other.path().join("key.pem"));
    write_ca_signed(&ca2, &[(&cert2, &key2, &["wrong.example"])]);
    let wrong = ServerProcess::launch(&["--tls", "--mode", "ident"], Some((&cert2, &key2)));
    let ca2_arg = ca2.to_str().unwrap();
    let out = say(&wrong, dir.path(), &["--tls", "--ca-file", ca2_arg], "x");
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not valid for this host name"),
        "{}",
        stderr(&out)
    );

    // --ca-file means that CA only: a key in known_hosts does not count.
    let out = say(
        &wrong,
        dir.path(),
        &["--tls", "--ca-file", ca_arg, "--trust", "accept-new"],
        "x",
    );
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not signed by a CA this client trusts"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plain_and_tls_ends_that_do_not_match_each_say_which_it_is_with_one_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let tls = ServerProcess::launch(&["--tls", "--mode", "ident"], None);
    let out = say(&tls, dir.path(), &[], "plain");
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the server speaks TLS"),
        "{}",
        stderr(&out)
    );
    tls.wait_for_log("not a TLS client");

    let plain = ServerProcess::launch(&["--mode", "ident"], None);
    let out = say(&plain, dir.path(), &["--tls"], "secure");
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not speak TLS"),
        "{}",
        stderr(&out)
    );
    plain.wait_for_log("a TLS client on a plain port");
}

/// Logs in through a PROXY header naming `client`, in the clear; what the
/// server answers.
fn login_in_the_clear_from(server: &ServerProcess, client: &str) -> ServerMsg {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let header = format!("PROXY TCP4 {client} 127.0.0.1 40000 {}\r\n", server.port());
    std::io::Write::write_all(&mut tcp, header.as_bytes()).unwrap();
    let hello: ServerMsg = tcp.recv_msg().unwrap().unwrap();
    assert!(matches!(hello, ServerMsg::Hello { .. }), "{hello:?}");
    let ask: ServerMsg = tcp.recv_msg().unwrap().unwrap();
    assert!(matches!(ask, ServerMsg::AskAuth { .. }), "{ask:?}");
    let login = ClientMsg::Login {
        user: "nobody".into(),
        password: Secret::new("not a real password"),
    };
    tcp.send_msg(&login).unwrap();
    tcp.recv_msg().unwrap().unwrap()
}

/// The password was checked (and found wrong), not refused unseen.
fn assert_checked(answer: &ServerMsg) {
    let checked = matches!(
        answer,
        ServerMsg::Error {
            code: ErrorCode::InvalidCredentials,
            ..
        }
    );
    assert!(checked, "{answer:?}");
}

#[test]
fn protected_mode_refuses_credentials_in_the_clear_from_another_machine() {
    let args = ["--proxy-protocol-from", "127.0.0.1/32"];
    let server = ServerProcess::launch(&args, None);
    // 10.1.2.3 is outside the loopback range: refused before any check.
    match login_in_the_clear_from(&server, "10.1.2.3") {
        ServerMsg::Error {
            code,
            fatal,
            message,
            ..
        } => {
            assert_eq!((code, fatal), (ErrorCode::TlsRequired, true));
            assert!(message.contains("--tls") && message.contains("allow_plaintext_auth"));
        }
        other => panic!("expected tls_required, got {other:?}"),
    }
    // From the loopback range the password is checked as usual.
    let answer = login_in_the_clear_from(&server, "127.0.0.9");
    assert_checked(&answer);

    // allow_plaintext_auth lets it through, with a warning at start.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(&config, "allow_plaintext_auth = true\n").unwrap();
    let config_arg = config.to_str().unwrap();
    let lenient = ServerProcess::launch(&["--config", config_arg, args[0], args[1]], None);
    lenient.wait_for_log("allow_plaintext_auth is on");
    let answer = login_in_the_clear_from(&lenient, "10.1.2.3");
    assert_checked(&answer);
}

#[test]
fn the_repl_shows_the_key_and_asks_before_trusting_it() {
    use rexpect::{reader::Options, session::spawn_with_options};
    let server = ServerProcess::launch(&["--tls", "--mode", "ident"], None);
    let key = server.fingerprint().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spawn = || {
        let mut command = Command::new(CLIENT);
        command
            .args([
                "--tls",
                "--host",
                "127.0.0.1",
                "--port",
                &server.port().to_string(),
            ])
            .arg("--token-file")
            .arg(dir.path().join("tokens.json"))
            .env_remove("ECHO_CLIENT_TLS");
        let options = Options::new()
            .timeout_ms(Some(15_000))
            .strip_ansi_escape_codes(true);
        spawn_with_options(command, options).unwrap()
    };
    let mut client = spawn();
    client.exp_string(&key).unwrap();
    client.exp_string("Trust this server? [y/N] ").unwrap();
    client.send("n\r").unwrap();
    client.flush().unwrap();
    client.exp_string("not trusted; nothing was sent").unwrap();
    client.exp_eof().unwrap();
    assert!(!dir.path().join("known_hosts").exists());

    let mut client = spawn();
    client.exp_string("Trust this server? [y/N] ").unwrap();
    client.send("y\r").unwrap();
    client.flush().unwrap();
    client.exp_string("Your name").unwrap();
    let known = std::fs::read_to_string(dir.path().join("known_hosts")).unwrap();
    assert!(known.contains(&key), "{known}");
}
