//! `echo-server upgrade` on a PostgreSQL store: the new process opens the
//! same database, and a client told `bye {restart}` resumes there with the
//! token it had, no password asked.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use echo_proto::{
    ByeReason, ClientMsg, Secret, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};
use echo_testkit::{
    KillOnDrop, PASSWORD, ServerProcess, connect_blocking, postgres::Postgres, register, resume,
};

/// The next frame.
fn next(stream: &mut std::net::TcpStream) -> ServerMsg {
    stream.recv_msg::<ServerMsg>().unwrap().unwrap()
}

/// `say` and its one reply.
fn echoes(stream: &mut std::net::TcpStream, text: &str) {
    let say = ClientMsg::Say {
        id: 1,
        text: text.into(),
    };
    stream.send_msg(&say).unwrap();
    assert!(matches!(next(stream), ServerMsg::Reply { text: got, .. } if got == text));
}

/// Sends `msg` after `ask_auth`: the token of the `welcome` it gets.
fn authenticate(stream: &mut std::net::TcpStream, msg: &ClientMsg) -> Secret {
    assert!(matches!(next(stream), ServerMsg::AskAuth { .. }));
    stream.send_msg(msg).unwrap();
    match next(stream) {
        ServerMsg::Welcome { token, .. } => token,
        other => panic!("expected welcome, got {other:?}"),
    }
}

#[test]
fn after_an_upgrade_on_postgres_a_client_resumes_with_its_token() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url();
    let args = ["--port", "0", "--host", "127.0.0.1", "--store", &url];
    let mut old = ServerProcess::start(dir.path(), &args, &[]);
    let mut client = connect_blocking(old.addr());
    let token = authenticate(&mut client, &register("ann", PASSWORD));
    echoes(&mut client, "before");

    let out = old.admin(&["upgrade"]);
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let pid = printed.split(' ').nth(2).unwrap().parse().unwrap();
    let _new = KillOnDrop(pid);
    match next(&mut client) {
        ServerMsg::Bye { reason, .. } => assert_eq!(reason, ByeReason::Restart),
        other => panic!("expected bye, got {other:?}"),
    }

    let mut again = connect_blocking(old.addr());
    authenticate(&mut again, &resume(&token));
    echoes(&mut again, "after");
    assert!(old.wait_exit(Duration::from_secs(10)).success());
    echoes(&mut again, "still");
}
