//! An upgrade during a login storm (#28): logins and registrations come in
//! one after another while `echo-server upgrade` runs. Each client is
//! welcomed once, by the old process or the new one, or told `bye
//! {restart}` before its answer and tries again; none is lost or doubled
//! (a registration let in twice would be refused `name_taken` the second
//! time), and every session welcomed by the old process resumes on the new
//! one with its token.
#![allow(clippy::unwrap_used)]

use std::{
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use echo_proto::{
    ByeReason, ClientMsg, Secret, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};
use echo_testkit::{PASSWORD, ServerProcess, login, register, resume};

use crate::upgrade_edges::upgraded;

/// Clients that log in (users registered first) and clients that register.
const LOGINS: usize = 20;
const REGISTRATIONS: usize = 20;
/// The pause between two clients' starts: a queue builds at the password workers.
/// Clients that start once the upgrade is done.
const LATE: usize = 10;
const STAGGER: Duration = Duration::from_millis(5);

/// What became of one client.
#[derive(Debug, Default)]
struct Outcome {
    /// Welcomed by the process that was then told to hand over (it later
    /// said `bye {restart}` to this session, which resumed).
    by_old: bool,
    /// Its welcome came after the new process was ready: its login or
    /// registration was in flight across the handover.
    across: bool,
    /// `bye {restart}` came instead of an answer: tried again.
    retried: u32,
    /// Anything else: a refusal, a lost connection.
    error: Option<String>,
}

/// A connection past `hello`, with a 10 s read timeout.
fn connected(addr: SocketAddr) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(addr).map_err(|err| format!("connect: {err}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    match stream.recv_msg::<ServerMsg>() {
        Ok(Some(ServerMsg::Hello { .. })) => Ok(stream),
        other => Err(format!("expected hello, got {other:?}")),
    }
}

/// One handshake with `msg` on a new connection: the token, or `None`
/// after `bye {restart}` (ask again).
fn handshake(addr: SocketAddr, msg: &ClientMsg) -> Result<(TcpStream, Option<Secret>), String> {
    let mut stream = connected(addr)?;
    let mut sent = false;
    loop {
        match stream.recv_msg::<ServerMsg>() {
            Ok(Some(ServerMsg::AskAuth { .. })) if !sent => {
                stream.send_msg(msg).map_err(|err| err.to_string())?;
                sent = true;
            }
            Ok(Some(ServerMsg::Welcome { token, .. })) => return Ok((stream, Some(token))),
            Ok(Some(ServerMsg::Bye {
                reason: ByeReason::Restart,
                ..
            })) => return Ok((stream, None)),
            other => return Err(format!("during the handshake: {other:?}")),
        }
    }
}

/// Logs in (or registers) with `msg`, trying again after `bye {restart}`
/// (five times at most); then echoes every 20 ms until `stop`, resuming
/// with its token when the process that welcomed it hands over.
fn client(addr: SocketAddr, msg: ClientMsg, flags: &Flags, welcomed: &AtomicUsize) -> Outcome {
    let mut outcome = Outcome::default();
    let mut session = None;
    for _ in 0..5 {
        match handshake(addr, &msg) {
            Ok((stream, Some(token))) => {
                session = Some((stream, token));
                break;
            }
            Ok((_, None)) => outcome.retried += 1,
            Err(err) => {
                return Outcome {
                    error: Some(err),
                    ..outcome
                };
            }
        }
    }
    let Some((stream, token)) = session else {
        outcome.error = Some("never welcomed".into());
        return outcome;
    };
    welcomed.fetch_add(1, Ordering::Relaxed);
    let handed_over = flags.handed.load(Ordering::Relaxed);
    if let Err(err) = echo_until_stopped(addr, (stream, token), &flags.stop, &mut outcome) {
        outcome.error = Some(err);
    }
    outcome.across = outcome.by_old && handed_over;
    outcome
}

/// Echoes every 20 ms until `stop` (at most 3000 times or 60 s); when the
/// process that welcomed the session says `bye {restart}`, resumes on the
/// new one with the token.
fn echo_until_stopped(
    addr: SocketAddr,
    (mut stream, mut token): (TcpStream, Secret),
    stop: &AtomicBool,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let started = Instant::now();
    let mut id = 0;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) && id < 3000
    {
        id += 1;
        let text = format!("m{id}");
        stream.send_msg(&ClientMsg::Say { id, text }).unwrap();
        match stream.recv_msg::<ServerMsg>() {
            Ok(Some(ServerMsg::Reply { re, .. })) if re == id => {}
            Ok(Some(ServerMsg::Bye {
                reason: ByeReason::Restart,
                ..
            })) if !outcome.by_old => {
                outcome.by_old = true;
                match handshake(addr, &resume(&token)) {
                    Ok((next, Some(next_token))) => (stream, token) = (next, next_token),
                    other => return Err(format!("resume: {other:?}")),
                }
            }
            other => return Err(format!("echo: {other:?}")),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// What the clients are told: the upgrade is done (`handed`), stop (`stop`).
#[derive(Debug, Default)]
struct Flags {
    handed: AtomicBool,
    stop: AtomicBool,
}

/// Registers `user` before the storm.
fn registered(addr: SocketAddr, user: &str) {
    let (_, token) = handshake(addr, &register(user, PASSWORD)).unwrap();
    assert!(token.is_some());
}

/// Clients `range` of the storm, started [`STAGGER`] apart: logins and
/// registrations in turn.
fn storm(
    addr: SocketAddr,
    range: std::ops::Range<usize>,
    (flags, welcomed): (&Arc<Flags>, &Arc<AtomicUsize>),
) -> Vec<JoinHandle<Outcome>> {
    range
        .map(|n| {
            let msg = match n % 2 {
                0 => login(&format!("old{}", n / 2), PASSWORD),
                _ => register(&format!("new{n}"), PASSWORD),
            };
            let (flags, welcomed) = (Arc::clone(flags), Arc::clone(welcomed));
            std::thread::sleep(STAGGER);
            std::thread::spawn(move || client(addr, msg, &flags, &welcomed))
        })
        .collect()
}

/// `echo-server upgrade` of the server of `data`, once three clients are
/// in (with most of the storm still to come); its output.
fn upgrade_once_welcomed(
    data: std::path::PathBuf,
    welcomed: &Arc<AtomicUsize>,
) -> JoinHandle<std::process::Output> {
    let welcomed = Arc::clone(welcomed);
    std::thread::spawn(move || {
        echo_testkit::wait_until(Duration::from_secs(30), || {
            welcomed.load(Ordering::Relaxed) >= 3
        });
        std::process::Command::new(echo_testkit::server_binary())
            .args(["upgrade", "--data-dir"])
            .arg(data)
            .output()
            .unwrap()
    })
}

/// Prints the figure and checks that no client had an error: how many
/// were welcomed by the old process.
fn report(outcomes: &[Outcome]) -> usize {
    let total = outcomes.len();
    let errors: Vec<_> = outcomes.iter().filter_map(|o| o.error.as_ref()).collect();
    let by_old = outcomes.iter().filter(|o| o.by_old).count();
    let across = outcomes.iter().filter(|o| o.across).count();
    let retried: u32 = outcomes.iter().map(|o| o.retried).sum();
    println!(
        "login storm across an upgrade: {total} clients ({LOGINS} logins, {REGISTRATIONS} registrations): \
         {by_old} welcomed by the old process ({across} of them after the new one was ready; \
         each resumed on the new), {} by the new, \
         {retried} told bye restart before their answer (and let in on trying again), {} errors",
        total - by_old,
        errors.len()
    );
    assert!(errors.is_empty(), "{errors:?}");
    by_old
}

#[test]
fn an_upgrade_during_a_login_storm_loses_and_doubles_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.toml");
    let settings = "auth_attempts_per_minute = 1000\nmax_handshakes_per_ip = 256\n";
    std::fs::write(&file, settings).unwrap();
    let file = file.display().to_string();
    let args = [
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--mode",
        "auth",
        "--config",
        &file,
    ];
    let mut old = ServerProcess::start(dir.path(), &args, &[]);
    let addr = old.addr();
    for n in 0..LOGINS {
        registered(addr, &format!("old{n}"));
    }
    let (flags, welcomed) = (Arc::new(Flags::default()), Arc::new(AtomicUsize::new(0)));
    let upgrader = upgrade_once_welcomed(dir.path().join("data"), &welcomed);
    // Most of the storm before the upgrade is done, the rest after it.
    let total = LOGINS + REGISTRATIONS;
    let mut clients = storm(addr, 0..total - LATE, (&flags, &welcomed));
    let new = upgraded(&upgrader.join().unwrap());
    flags.handed.store(true, Ordering::Relaxed);
    clients.extend(storm(addr, total - LATE..total, (&flags, &welcomed)));
    assert!(old.wait_exit(Duration::from_secs(30)).success());
    std::thread::sleep(Duration::from_millis(300));
    flags.stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<Outcome> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let by_old = report(&outcomes);
    assert!(
        by_old > 0 && by_old < outcomes.len(),
        "the upgrade came during the storm: {by_old} of {}",
        outcomes.len()
    );
    // Every account once: the registered ones and the storm's.
    let listed = old.admin(&["user", "list"]);
    let users = String::from_utf8_lossy(&listed.stdout).lines().count();
    assert_eq!(users, LOGINS + REGISTRATIONS, "{listed:?}");
    assert!(new.is_running());
}
