//! echo-client's interactive REPL through a pseudo-terminal (rexpect), against
//! a real server on loopback.

use std::{path::Path, process::Command};

use echo_proto::Mode;
use echo_testkit::{PASSWORD, TestServer, auth_config, test_config};
use rexpect::reader::Options;
use rexpect::session::{PtySession, spawn_with_options};

use crate::pipe::{CLIENT, pipe, stderr};

/// Types `text` and Enter. A terminal sends a carriage return for Enter;
/// in cooked mode the tty turns it into a newline, in raw mode (the line
/// editor) it is the Enter key itself.
pub fn enter(client: &mut PtySession, text: &str) -> Result<(), rexpect::error::Error> {
    client.send(&format!("{text}\r"))?;
    client.flush()
}

/// Answers a hidden question once it is fully asked: the terminal is
/// switched to no-echo after the prompt is printed, and that switch
/// drops what was typed before it, so give it a moment.
pub fn secret(client: &mut PtySession, prompt: &str, text: &str) {
    client.exp_string(prompt).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    enter(client, text).unwrap();
}

pub fn spawn(args: &[&str], dir: &Path) -> PtySession {
    let mut command = Command::new(CLIENT);
    command
        .args(args)
        .arg("--token-file")
        .arg(dir.join("tokens.json"))
        .env("XDG_STATE_HOME", dir)
        .env_remove("ECHO_USER")
        .env_remove("ECHO_CLIENT_HOST")
        .env_remove("ECHO_CLIENT_PORT");
    let options = Options::new()
        .timeout_ms(Some(15_000))
        .strip_ansi_escape_codes(true);
    spawn_with_options(command, options).unwrap()
}

#[test]
fn prompts_take_defaults_re_ask_bad_values_and_the_repl_chats() {
    let server = TestServer::start_blocking(auth_config());
    let dir = tempfile::tempdir().unwrap();
    let port = server.addr.port().to_string();
    let mut client = spawn(&[], dir.path());
    client.exp_string("Host [127.0.0.1]: ").unwrap();
    enter(&mut client, "bad host!").unwrap();
    client.exp_string("is not a host name or address").unwrap();
    client.exp_string("Host [127.0.0.1]: ").unwrap();
    enter(&mut client, "").unwrap();
    client.exp_string("Port [13131]: ").unwrap();
    enter(&mut client, "abc").unwrap();
    client.exp_string("\"abc\" is not a number").unwrap();
    client.exp_string("Port [13131]: ").unwrap();
    enter(&mut client, "70000").unwrap();
    client.exp_string("70000 is out of range").unwrap();
    client.exp_string("Port [13131]: ").unwrap();
    enter(&mut client, &port).unwrap();
    client
        .exp_string("Log in or register? (l/r) [l]: ")
        .unwrap();
    enter(&mut client, "r").unwrap();
    client.exp_string("User: ").unwrap();
    enter(&mut client, "hana").unwrap();
    secret(&mut client, "Password: ", PASSWORD);
    secret(&mut client, "Password again: ", PASSWORD);
    client.exp_string("Welcome, hana.").unwrap();
    client.exp_string("> ").unwrap();
    enter(&mut client, "/repeat 4 ping").unwrap();
    for _ in 0..4 {
        client.exp_string("ping").unwrap();
    }
    enter(&mut client, "/quit").unwrap();
    client.exp_eof().unwrap();

    // The token lets the next run in without a question.
    let mut client = spawn(&["--host", "127.0.0.1", "--port", &port], dir.path());
    client
        .exp_string("Welcome back, hana (session resumed).")
        .unwrap();
    client.exp_string("> ").unwrap();
    enter(&mut client, "hello there").unwrap();
    client.exp_string("hello there").unwrap();
    client.send_control('d').unwrap();
    client.exp_eof().unwrap();
    let history = std::fs::read_to_string(dir.path().join("echo-client/history")).unwrap();
    assert!(history.contains("/repeat 4 ping\n") && history.contains("hello there\n"));
}

#[test]
fn logout_forgets_the_token_and_reconnect_asks_for_the_password() {
    let server = TestServer::start_blocking(auth_config());
    let dir = tempfile::tempdir().unwrap();
    let port = server.addr.port().to_string();
    let tokens = dir.path().join("tokens.json");
    let out = pipe(
        &server,
        &tokens,
        &["--register"],
        &[("ECHO_USER", "ivan"), ("ECHO_PASSWORD", PASSWORD)],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut client = spawn(&["--host", "127.0.0.1", "--port", &port], dir.path());
    client.exp_string("Welcome back, ivan").unwrap();
    client.exp_string("> ").unwrap();
    enter(&mut client, "/logout").unwrap();
    client.exp_string("logged out").unwrap();
    enter(&mut client, "/reconnect").unwrap();
    client
        .exp_string("Log in or register? (l/r) [l]: ")
        .unwrap();
    enter(&mut client, "").unwrap();
    client.exp_string("User [ivan]: ").unwrap();
    enter(&mut client, "").unwrap();
    secret(&mut client, "Password: ", "wrong wrong wrong");
    client
        .exp_string("wrong user name or password (4 attempt(s) left)")
        .unwrap();
    client
        .exp_string("Log in or register? (l/r) [l]: ")
        .unwrap();
    enter(&mut client, "l").unwrap();
    client.exp_string("User [ivan]: ").unwrap();
    enter(&mut client, "").unwrap();
    secret(&mut client, "Password: ", PASSWORD);
    client.exp_string("Welcome, ivan.").unwrap();
    enter(&mut client, "/quit").unwrap();
    client.exp_eof().unwrap();
}

#[test]
fn the_user_is_told_when_the_server_goes_away_and_reconnect_resumes() {
    let server = TestServer::start_blocking(auth_config());
    let dir = tempfile::tempdir().unwrap();
    let port = server.addr.port().to_string();
    let tokens = dir.path().join("tokens.json");
    let creds = [("ECHO_USER", "kim"), ("ECHO_PASSWORD", PASSWORD)];
    assert!(
        pipe(&server, &tokens, &["--register"], &creds, "")
            .status
            .success()
    );
    let mut client = spawn(&["--host", "127.0.0.1", "--port", &port], dir.path());
    client.exp_string("Welcome back, kim").unwrap();
    client.exp_string("> ").unwrap();
    let server = server.restart_blocking(auth_config());
    client
        .exp_string("the server closed the connection (it is shutting down)")
        .unwrap();
    // The next line typed connects again (with the saved token) and
    // is sent.
    enter(&mut client, "hello?").unwrap();
    client
        .exp_string("Not connected: connecting again.")
        .unwrap();
    client
        .exp_string("Welcome back, kim (session resumed).")
        .unwrap();
    client.exp_string("hello?").unwrap();
    // `/reconnect` still works, and `//` sends a line starting with /.
    enter(&mut client, "/quit now").unwrap();
    client.exp_string("/quit takes no arguments").unwrap();
    enter(&mut client, "//whoami").unwrap();
    client.exp_string("you are kim").unwrap();
    enter(&mut client, "/reconnect").unwrap();
    client
        .exp_string("Welcome back, kim (session resumed).")
        .unwrap();
    enter(&mut client, "back again").unwrap();
    client.exp_string("back again").unwrap();
    enter(&mut client, "/quit").unwrap();
    client.exp_eof().unwrap();
    drop(server);
}

#[test]
fn a_handshake_timeout_while_typing_asks_again_on_a_fresh_connection() {
    let mut config = echo_server::ServerConfig {
        mode: Mode::Auth,
        ..echo_server::ServerConfig::default()
    };
    config.timeouts.handshake = std::time::Duration::from_secs(1);
    let server = TestServer::start_blocking(config);
    let dir = tempfile::tempdir().unwrap();
    let port = server.addr.port().to_string();
    let mut client = spawn(&["--host", "127.0.0.1", "--port", &port], dir.path());
    client
        .exp_string("Log in or register? (l/r) [l]: ")
        .unwrap();
    // The person takes longer than the server waits.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    enter(&mut client, "r").unwrap();
    client.exp_string("User: ").unwrap();
    enter(&mut client, "slow").unwrap();
    secret(&mut client, "Password: ", PASSWORD);
    secret(&mut client, "Password again: ", PASSWORD);
    client
        .exp_string("The server stopped waiting for an answer; connecting again.")
        .unwrap();
    client
        .exp_string("Log in or register? (l/r) [l]: ")
        .unwrap();
    enter(&mut client, "r").unwrap();
    client.exp_string("User: ").unwrap();
    enter(&mut client, "slow").unwrap();
    secret(&mut client, "Password: ", PASSWORD);
    secret(&mut client, "Password again: ", PASSWORD);
    client.exp_string("Welcome, slow.").unwrap();
    enter(&mut client, "/quit").unwrap();
    client.exp_eof().unwrap();
}

#[test]
fn ctrl_d_at_a_question_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let mut client = spawn(&[], dir.path());
    client.exp_string("Host [127.0.0.1]: ").unwrap();
    client.send_control('d').unwrap();
    client.exp_string("cancelled").unwrap();
    client.exp_eof().unwrap();
    match client.process().wait().unwrap() {
        rexpect::process::WaitStatus::Exited(_, code) => assert_eq!(code, 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn identification_asks_for_a_name_once() {
    let server = TestServer::start_blocking(test_config());
    let dir = tempfile::tempdir().unwrap();
    let port = server.addr.port().to_string();
    let mut client = spawn(&["--host", "127.0.0.1", "--port", &port], dir.path());
    client.exp_string("Your name: ").unwrap();
    enter(&mut client, "Jo").unwrap();
    client.exp_string("Hello, Jo! Nice to meet you.").unwrap();
    enter(&mut client, "/quit").unwrap();
    client.exp_eof().unwrap();
    let mut client = spawn(&["--host", "127.0.0.1", "--port", &port], dir.path());
    client.exp_string("Hello again, Jo!").unwrap();
    client.exp_string("> ").unwrap();
    client.send_control('c').unwrap();
    client
        .exp_string("(Ctrl-C clears the line; /quit or Ctrl-D leaves)")
        .unwrap();
    client.send_control('d').unwrap();
    client.exp_eof().unwrap();
}
