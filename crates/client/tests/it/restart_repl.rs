//! `bye restart` at the REPL: one line says the client reconnected, and
//! the conversation goes on; a token the new process refuses sends the
//! person to the password prompt. Against the scripted fake server.

use std::thread;

use echo_client::TokenJar;
use echo_proto::{ClientMsg, Mode, Secret, ServerMsg};
use echo_testkit::PASSWORD;
use rexpect::session::PtySession;

use crate::{
    fake::Fake,
    terminal::{enter, spawn},
};

/// A REPL started with a token saved for the fake ("tok-1"); its state
/// directory lives as long as the returned one.
fn repl_on_fake() -> (Fake, tempfile::TempDir, PtySession) {
    let fake = Fake::bind();
    let port = fake.port().to_string();
    let dir = tempfile::tempdir().unwrap();
    TokenJar::new(dir.path().join("tokens.json"))
        .set(&fake.server_name(), &Secret::new("tok-1"))
        .unwrap();
    let client = spawn(&["--host", "127.0.0.1", "--port", &port], dir.path());
    (fake, dir, client)
}

/// The first connection: resumes (rotating to "tok-2"), echoes "one",
/// then says `bye restart`.
fn echo_one_then_restart(fake: &Fake) {
    let mut first = fake.accept(Mode::Auth);
    first.resume("tok-2");
    assert_eq!(first.echo_one(), "one");
    first.bye_restart(50);
}

#[test]
fn the_repl_says_one_line_and_carries_on_after_bye_restart() {
    let (fake, _dir, mut client) = repl_on_fake();
    let script = thread::spawn(move || {
        echo_one_then_restart(&fake);
        let mut second = fake.accept(Mode::Auth);
        let presented = second.resume("tok-3");
        (presented, second.echo_all())
    });
    client
        .exp_string("Welcome back, ann (session resumed).")
        .unwrap();
    client.exp_string("> ").unwrap();
    enter(&mut client, "one").unwrap();
    client.exp_string("one").unwrap();
    client
        .exp_string("reconnected: the server restarted")
        .unwrap();
    enter(&mut client, "two").unwrap();
    client.exp_string("two").unwrap();
    enter(&mut client, "/quit").unwrap();
    client.exp_eof().unwrap();
    let (presented, said) = script.join().unwrap();
    assert_eq!(presented, "tok-2");
    assert_eq!(said, ["two"]);
}

#[test]
fn a_repl_whose_token_is_refused_after_bye_restart_asks_for_the_password_on_the_terminal() {
    let (fake, _dir, mut client) = repl_on_fake();
    let script = thread::spawn(move || {
        echo_one_then_restart(&fake);
        // The new process does not take the token (revoked meanwhile).
        let mut second = fake.accept(Mode::Auth);
        second.send(&ServerMsg::AskAuth {
            suggested_user: None,
        });
        assert!(matches!(second.recv(), Some(ClientMsg::Resume { .. })));
        second.send(&ServerMsg::Error {
            code: echo_proto::ErrorCode::TokenInvalid,
            message: "no such session".into(),
            fatal: false,
            attempts_left: None,
        });
        second.send(&ServerMsg::AskAuth {
            suggested_user: None,
        });
        // The client leaves it to ask the person at the terminal.
        assert_eq!(second.recv(), None);
        let mut third = fake.accept(Mode::Auth);
        third.send(&ServerMsg::AskAuth {
            suggested_user: None,
        });
        let login = third.recv();
        third.send(&crate::fake::welcome("tok-4"));
        (login, third.echo_all())
    });
    client
        .exp_string("Welcome back, ann (session resumed).")
        .unwrap();
    client.exp_string("> ").unwrap();
    enter(&mut client, "one").unwrap();
    client.exp_string("one").unwrap();
    client
        .exp_string("was revoked or has expired; a password is needed")
        .unwrap();
    client
        .exp_string("Log in or register? (l/r) [l]: ")
        .unwrap();
    enter(&mut client, "l").unwrap();
    client.exp_string("User: ").unwrap();
    enter(&mut client, "ann").unwrap();
    crate::terminal::secret(&mut client, "Password", PASSWORD);
    client
        .exp_string("reconnected: the server restarted")
        .unwrap();
    enter(&mut client, "two").unwrap();
    client.exp_string("two").unwrap();
    enter(&mut client, "/quit").unwrap();
    client.exp_eof().unwrap();
    let (login, said) = script.join().unwrap();
    assert!(
        matches!(&login, Some(ClientMsg::Login { user, .. }) if user == "ann"),
        "{login:?}"
    );
    assert_eq!(said, ["two"]);
}
