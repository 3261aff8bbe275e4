//! A new binary that fails to take over (exits, cannot open its store,
//! never says ready) leaves the old server serving, and `echo-server
//! upgrade` says why; a new process whose old one is gone serves anyway.
#![allow(clippy::unwrap_used)]

use std::{
    process::Command,
    time::{Duration, Instant},
};

use echo_proto::ServerMsg;
use echo_proto::ext::BlockingFrameRead;
use echo_testkit::{KillOnDrop, ServerProcess, binary_copy, replace_with_script};

use crate::upgrade::{IDENT, echoes, identified, say, served_from_a_copy};

#[test]
fn a_new_binary_that_exits_leaves_the_old_server_serving() {
    let dir = tempfile::tempdir().unwrap();
    let binary = binary_copy(dir.path());
    let mut old = ServerProcess::start_command(Command::new(&binary), dir.path(), IDENT, &[]);
    let mut client = identified(old.addr(), "ann");
    replace_with_script(&binary, "echo 'a broken build' >&2; exit 3");

    let out = old.admin(&["upgrade"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        said.contains("exited with status 3 before it was ready"),
        "{said}"
    );
    say(&mut client, 1, "after");
    assert!(matches!(
        client.recv_msg::<ServerMsg>().unwrap(),
        Some(ServerMsg::Reply { .. })
    ));
    echoes(old.addr());
    assert!(
        old.child.try_wait().unwrap().is_none(),
        "the old server stopped"
    );
    old.wait_for_log("upgrade failed; still serving");
}

#[test]
fn a_new_process_that_cannot_open_its_store_says_why_and_the_old_one_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, real, old) = served_from_a_copy(dir.path());
    // The new binary is the real one, with a store it cannot open.
    let store = "sqlite:/proc/no-such-dir/echo.db";
    let body = format!("ECHO_SERVER_STORE={store} exec {} \"$@\"", real.display());
    replace_with_script(&binary, &body);

    let out = old.admin(&["upgrade"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        said.contains("exited with status 1 before it was ready: "),
        "{said}"
    );
    assert!(
        said.contains("no-such-dir"),
        "the new process's reason: {said}"
    );
    echoes(old.addr());
    // Its control socket is the old one's still: clients answers.
    let listed = old.admin(&["clients"]);
    assert!(listed.status.success(), "{listed:?}");
}

#[test]
fn a_new_process_not_ready_in_10_s_is_stopped_and_the_old_one_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let binary = binary_copy(dir.path());
    let old = ServerProcess::start_command(Command::new(&binary), dir.path(), IDENT, &[]);
    let pid_of_hung = dir.path().join("hung.pid");
    let body = format!("echo $$ > {}; exec sleep 60", pid_of_hung.display());
    replace_with_script(&binary, &body);

    let started = Instant::now();
    let out = old.admin(&["upgrade"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        said.contains("was not ready within 10s; it was stopped"),
        "{said}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    let hung: u32 = std::fs::read_to_string(&pid_of_hung)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!KillOnDrop(hung).is_running(), "the hung process was left");
    echoes(old.addr());
}

#[test]
fn a_new_process_whose_old_one_was_killed_meanwhile_serves_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, real, mut old) = served_from_a_copy(dir.path());
    // The new binary kills the old process (its parent) before it starts:
    // nobody is left to tell that it is ready.
    let pid_file = dir.path().join("new.pid");
    let body = format!(
        "echo $$ > {}; kill -9 $PPID; exec {} \"$@\"",
        pid_file.display(),
        real.display()
    );
    replace_with_script(&binary, &body);

    let out = old.admin(&["upgrade"]);
    assert!(!out.status.success(), "the old server cannot answer");
    assert!(!old.wait_exit(Duration::from_secs(10)).success());
    let new = KillOnDrop(
        std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    );
    // The port stays served: the new process holds it and serves anyway.
    std::thread::sleep(Duration::from_millis(300));
    echoes(old.addr());
    assert!(new.is_running());
    let listed = old.admin(&["clients"]);
    assert!(listed.status.success(), "{listed:?}");
}

#[test]
fn every_upgrade_of_an_idle_server_is_answered_before_the_old_one_exits() {
    // With no client to drain, the old process's serving ends at once after
    // the handover; the answer to `upgrade`, sent just after it, must still
    // reach the admin command before that process exits.
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), IDENT, &[]);
    let mut newest = None;
    for round in 0..6 {
        let out = server.admin(&["upgrade"]);
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "upgrade {round}: {printed}{said}");
        let pid = printed.strip_prefix("upgraded: pid ").unwrap();
        newest = Some(KillOnDrop(pid.split(' ').next().unwrap().parse().unwrap()));
        if round == 0 {
            assert!(server.wait_exit(Duration::from_secs(15)).success());
        }
    }
    echoes(server.addr());
    drop(newest);
}
