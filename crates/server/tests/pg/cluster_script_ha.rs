//! `ECHO_PG_HA=1 scripts/cluster.sh`: the cluster on a primary and a
//! synchronous standby; the primary's death is said (with the command that
//! promotes the standby) instead of stopping the cluster, and after that
//! command clients log in through HAProxy again.
#![allow(clippy::unwrap_used)]

use std::{
    process::Command,
    time::{Duration, Instant},
};

use echo_testkit::{
    PASSWORD,
    cluster::{Answer, Client},
    cluster_script::{ClusterScript, Ports},
    haproxy::haproxy,
    login,
    postgres::Postgres,
    register,
};

#[test]
fn echo_pg_ha_survives_the_primary_once_the_printed_promote_command_runs() {
    if haproxy().is_none() || !Postgres::available() {
        return;
    }
    let ports = Ports::free();
    let mut script = ClusterScript::spawn(ports, &[("ECHO_MODE", "auth"), ("ECHO_PG_HA", "1")]);
    let banner = script.wait_up(Duration::from_secs(120));
    let said = script.stdout();
    assert!(
        said.contains("target_session_attrs=read-write") && said.contains("standby:   synchronous"),
        "{said}"
    );
    Client::welcomed(ports.lb_addr(), &register("ann", PASSWORD));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(banner.postgres_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let promote = format!(
        "scripts/throwaway-postgres.sh promote {}",
        banner.work.join("pg2").display()
    );
    assert!(
        script.stderr_says(&promote, Duration::from_secs(20)),
        "the primary's death was not said with the promote command: {}",
        script.said()
    );
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let promoted = Command::new("bash")
        .arg("-c")
        .arg(&promote)
        .current_dir(repo)
        .status()
        .unwrap();
    assert!(promoted.success());
    let started = Instant::now();
    let back = echo_testkit::wait_until(Duration::from_secs(30), || {
        matches!(
            Answer::try_at(ports.lb_addr(), &login("ann", PASSWORD)),
            Some(Answer::Welcome(_))
        )
    });
    eprintln!(
        "cluster.sh ECHO_PG_HA=1: a login through HAProxy welcomed {:?} after the promotion",
        started.elapsed()
    );
    assert!(
        back,
        "no login through HAProxy after the promotion: {}",
        script.said()
    );
    assert!(script.interrupt(Duration::from_secs(30)).is_some());
    assert!(
        !banner.work.exists(),
        "{} is left behind",
        banner.work.display()
    );
    assert_eq!(script.processes_left(), Vec::<String>::new());
}
