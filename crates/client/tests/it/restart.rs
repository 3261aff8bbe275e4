//! `bye restart`: the client connects again by itself, resumes with its
//! saved token (no password), and sends again only the lines the old
//! process never answered. Against the scripted fake server (`fake.rs`),
//! and through it to the real server's resume path.

use std::{
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use echo_client::TokenJar;
use echo_proto::{
    ClientMsg, Mode, Secret, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};
use echo_testkit::{PASSWORD, TestServer, auth_config};

use crate::{
    fake::{Fake, FakeConn, relay},
    pipe::{pipe, pipe_to, stderr, stdout, token_file},
};

/// How long the fake holds the first line before answering it: long
/// enough for the client to have sent the others, which the fake then
/// leaves unread (as a server does with what arrives after its last read).
const HOLD: Duration = Duration::from_millis(300);

/// Saves `token` for the fake in a fresh token file.
fn jar_with(dir: &tempfile::TempDir, fake: &Fake, token: &str) -> std::path::PathBuf {
    let tokens = token_file(dir);
    TokenJar::new(&tokens)
        .set(&fake.server_name(), &Secret::new(token))
        .unwrap();
    tokens
}

/// The first connection: resumes, answers one line after [`HOLD`], then
/// says `bye restart`.
fn first_connection_then_restart(fake: &Fake, mode: Mode) -> Option<String> {
    let mut conn = fake.accept(mode);
    let token = match mode {
        Mode::Auth => Some(conn.resume("tok-2")),
        Mode::Ident => {
            conn.send(&ServerMsg::Greet {
                name: "Ann".into(),
                known: true,
            });
            None
        }
    };
    thread::sleep(HOLD);
    assert_eq!(conn.echo_one(), "one");
    conn.bye_restart(50);
    token
}

#[test]
fn a_pipe_resumes_after_bye_restart_and_sends_only_the_unanswered_lines_again() {
    let fake = Fake::bind();
    let (port, name) = (fake.port(), fake.server_name());
    let dir = tempfile::tempdir().unwrap();
    let tokens = jar_with(&dir, &fake, "tok-1");
    let script = thread::spawn(move || {
        let first = first_connection_then_restart(&fake, Mode::Auth);
        let mut second = fake.accept(Mode::Auth);
        let presented = second.resume("tok-3");
        (first, presented, second.echo_all())
    });
    // No user and no password: a login would fail the run.
    let output = pipe_to(port, &tokens, &[], &[], "one\ntwo\nthree\n");
    let (first, presented, said_again) = script.join().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "one\ntwo\nthree\n");
    assert_eq!(stderr(&output), "");
    assert_eq!(first.as_deref(), Some("tok-1"));
    // The token the first connection's `welcome` gave, not the old one.
    assert_eq!(presented, "tok-2");
    assert_eq!(said_again, ["two", "three"]);
    let saved = TokenJar::new(&tokens).get(&name).unwrap();
    assert_eq!(saved.unwrap().expose(), "tok-3");
}

#[test]
fn a_bye_restart_during_the_handshake_is_met_by_connecting_again() {
    let fake = Fake::bind();
    let port = fake.port();
    let dir = tempfile::tempdir().unwrap();
    let tokens = jar_with(&dir, &fake, "tok-1");
    let script = thread::spawn(move || {
        // The old process takes the connection, then hands over before
        // it answers the resume.
        let mut first = fake.accept(Mode::Auth);
        first.send(&ServerMsg::AskAuth {
            suggested_user: None,
        });
        assert!(matches!(first.recv(), Some(ClientMsg::Resume { .. })));
        first.bye_restart(0);
        let mut second = fake.accept(Mode::Auth);
        let presented = second.resume("tok-2");
        (presented, second.echo_all())
    });
    let output = pipe_to(port, &tokens, &[], &[], "one\n");
    let (presented, said) = script.join().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "one\n");
    // No `welcome` replaced it: the same token is presented again.
    assert_eq!(presented, "tok-1");
    assert_eq!(said, ["one"]);
}

#[test]
fn in_identification_mode_the_reconnect_is_greeted_by_address() {
    let fake = Fake::bind();
    let port = fake.port();
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(&dir);
    let script = thread::spawn(move || {
        first_connection_then_restart(&fake, Mode::Ident);
        let mut second = fake.accept(Mode::Ident);
        second.send(&ServerMsg::Greet {
            name: "Ann".into(),
            known: true,
        });
        second.echo_all()
    });
    // No --user: a `name` asked for would fail the run.
    let output = pipe_to(port, &tokens, &[], &[], "one\ntwo\n");
    let said_again = script.join().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "one\ntwo\n");
    assert_eq!(said_again, ["two"]);
}

#[test]
fn a_server_that_does_not_come_back_is_tried_five_times_then_named() {
    let fake = Fake::bind();
    let port = fake.port();
    let dir = tempfile::tempdir().unwrap();
    let tokens = jar_with(&dir, &fake, "tok-1");
    let script = thread::spawn(move || {
        first_connection_then_restart(&fake, Mode::Auth);
        // The listener closes: every attempt is refused.
    });
    let started = Instant::now();
    let output = pipe_to(port, &tokens, &[], &[], "one\ntwo\n");
    script.join().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        format!(
            "echo-client: the server restarted and connecting again failed (5 attempts): \
             cannot connect to 127.0.0.1:{port}: connection refused (is the server running?)\n"
        )
    );
    // 50 ms, then 250 ms doubling up to 2 s, each with at most 200 ms more.
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(3_800), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

#[test]
fn the_real_servers_resume_path_takes_the_client_back_after_bye_restart() {
    let server = TestServer::start_blocking(auth_config());
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(&dir);
    let creds = [("ECHO_USER", "ann"), ("ECHO_PASSWORD", PASSWORD)];
    let registered = pipe(&server, &tokens, &["--register"], &creds, "first\n");
    assert!(registered.status.success(), "{}", stderr(&registered));
    // The fake stands between the client and the server: the session's
    // token, saved for the server, is moved to the fake's address.
    let fake = Fake::bind();
    let jar = TokenJar::new(&tokens);
    let server_name = format!("127.0.0.1:{}", server.addr.port());
    let token = jar.get(&server_name).unwrap().unwrap();
    jar.set(&fake.server_name(), &token).unwrap();
    let port = fake.port();
    let addr = server.addr;
    let script = thread::spawn(move || {
        relay_one_line_then_restart(&fake, addr);
        relay(fake.accept_raw(), TcpStream::connect(addr).unwrap());
    });
    let output = pipe_to(port, &tokens, &[], &[], "one\ntwo\nthree\n");
    script.join().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "one\ntwo\nthree\n");
    // Two resumes on the real server: the token rotated twice.
    let now = jar.get(&format!("127.0.0.1:{port}")).unwrap().unwrap();
    assert_ne!(now.expose(), token.expose());
}

/// Relays the real server's handshake and the first line's answer, then
/// ends the client's connection with `bye restart` as the server would.
fn relay_one_line_then_restart(fake: &Fake, server: SocketAddr) {
    let mut client = fake.accept_raw();
    let mut upstream = TcpStream::connect(server).unwrap();
    let down = |upstream: &mut TcpStream, client: &mut TcpStream| {
        let msg: ServerMsg = upstream.recv_msg().unwrap().unwrap();
        client.send_msg(&msg).unwrap();
        msg
    };
    down(&mut upstream, &mut client); // hello
    down(&mut upstream, &mut client); // ask_auth
    let resume: ClientMsg = client.recv_msg().unwrap().unwrap();
    assert!(matches!(resume, ClientMsg::Resume { .. }), "{resume:?}");
    upstream.send_msg(&resume).unwrap();
    let welcome = down(&mut upstream, &mut client);
    assert!(matches!(welcome, ServerMsg::Welcome { .. }), "{welcome:?}");
    let say: ClientMsg = client.recv_msg().unwrap().unwrap();
    upstream.send_msg(&say).unwrap();
    thread::sleep(HOLD);
    down(&mut upstream, &mut client); // the reply to "one"
    FakeConn::from_stream(client).bye_restart(50);
}

/// Credentials a test never expects to be asked for.
struct NoAnswers;

impl echo_client::Credentials for NoAnswers {
    fn name(&mut self) -> Result<String, echo_client::ClientError> {
        panic!("a name was asked for")
    }

    fn choose(
        &mut self,
        _: Option<&str>,
    ) -> Result<echo_client::AuthRequest, echo_client::ClientError> {
        panic!("a password was asked for")
    }

    fn refused(
        &mut self,
        _: echo_proto::ErrorCode,
        message: &str,
        _: Option<u32>,
    ) -> Result<(), echo_client::ClientError> {
        panic!("refused: {message}")
    }
}

#[test]
fn a_line_written_after_the_server_closed_stays_in_flight_for_the_restart() {
    let fake = Fake::bind();
    let port = fake.port();
    let server = thread::spawn(move || {
        let mut conn = fake.accept(Mode::Ident);
        conn.send(&ServerMsg::Greet {
            name: "Ann".into(),
            known: true,
        });
        // `bye restart` and gone: no reading what the client sends later.
        conn.send(&ServerMsg::Bye {
            reason: echo_proto::ByeReason::Restart,
            cause: None,
            retry_after_ms: Some(0),
        });
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut conn = echo_client::Connection::connect("127.0.0.1", port, None)
            .await
            .unwrap();
        echo_client::handshake(&mut conn, None, &mut NoAnswers)
            .await
            .unwrap();
        server.join().unwrap();
        let mut conv = echo_client::Conversation::new(conn);
        // The first write is taken, and answered by a reset; the second
        // then fails: neither is an error, both wait for the restart.
        conv.say("first".into()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        conv.say("second".into()).await.unwrap();
        assert_eq!(conv.unanswered(), 2);
        let bye = conv.recv().await.unwrap();
        assert!(
            matches!(
                bye,
                echo_client::Incoming::Msg(ServerMsg::Bye {
                    reason: echo_proto::ByeReason::Restart,
                    ..
                })
            ),
            "{bye:?}"
        );
    });
}

#[test]
fn a_one_shot_resumes_after_bye_restart_and_sends_its_line_again() {
    let fake = Fake::bind();
    let port = fake.port();
    let dir = tempfile::tempdir().unwrap();
    let tokens = jar_with(&dir, &fake, "tok-1");
    let script = thread::spawn(move || {
        // The old process lets the client in, then hands over before it
        // reads the one line.
        let mut first = fake.accept(Mode::Auth);
        let presented = first.resume("tok-2");
        thread::sleep(HOLD);
        first.bye_restart(50);
        let mut second = fake.accept(Mode::Auth);
        (presented, second.resume("tok-3"), second.echo_all())
    });
    // One-shot: the words are the one message; no user, no password.
    let output = pipe_to(port, &tokens, &["hi", "there"], &[], "");
    let (first, presented, said) = script.join().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "hi there\n");
    assert_eq!(stderr(&output), "", "a resume says nothing");
    assert_eq!((first.as_str(), presented.as_str()), ("tok-1", "tok-2"));
    assert_eq!(said, ["hi there"]);
}
