//! Several `echo-server` processes on one throwaway PostgreSQL, under
//! faults: attempt limits across servers, `kill -9` of one during
//! registrations, the database stopped and restarted under load.
#![allow(clippy::unwrap_used)]

use std::{
    net::TcpStream,
    time::{Duration, Instant},
};

use echo_proto::{
    ErrorCode, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};
use echo_testkit::{PASSWORD, login, register, resume};
use echo_testkit::{
    cluster::{Answer, Client, Cluster, UNLIMITED},
    postgres::Postgres,
};

#[test]
fn password_attempts_are_counted_across_servers() {
    let Some(pg) = Postgres::start() else { return };
    let cluster = Cluster::start(&pg, 2, "auth_attempts_per_minute = 30\n");
    Client::welcomed(cluster.addr(0), &register("cy", PASSWORD));
    // Failures of one account from one source on two servers make one
    // run: the fifth starts that source's back-off, wherever it happened.
    let failures =
        "SELECT consecutive, blocked_until > 0 FROM attempt_sources WHERE account = 'cy'";
    for addr in [
        cluster.addr(0),
        cluster.addr(1),
        cluster.addr(0),
        cluster.addr(1),
    ] {
        let answer = Client::connect(addr).ask(&login("cy", "wrong password 1"));
        answer.assert_refused(ErrorCode::InvalidCredentials);
    }
    assert_eq!(
        pg.psql(failures).trim(),
        "4|f",
        "four failures, on both servers"
    );
    let answer = Client::connect(cluster.addr(1)).ask(&login("cy", "wrong password 2"));
    answer.assert_refused(ErrorCode::InvalidCredentials);
    assert_eq!(
        pg.psql(failures).trim(),
        "5|t",
        "the fifth failure starts the back-off"
    );
    // Attempts per address: 4 a minute on these two servers, counted in
    // the same bucket as the attempts above.
    let limited = Cluster::start(&pg, 2, "auth_attempts_per_minute = 4\n");
    for addr in [
        limited.addr(0),
        limited.addr(1),
        limited.addr(0),
        limited.addr(1),
    ] {
        let answer = Client::connect(addr).ask(&login("nobody", "wrong password 3"));
        answer.assert_refused(ErrorCode::InvalidCredentials);
    }
    let answer = Client::connect(limited.addr(0)).ask(&login("nobody", "wrong password 3"));
    assert!(
        matches!(
            answer,
            Answer::Refused {
                code: ErrorCode::RateLimited,
                ..
            }
        ),
        "the fifth attempt in a minute, after four on two servers: {answer:?}"
    );
}

#[test]
fn kill_9_during_registrations_loses_no_acknowledged_user() {
    let Some(pg) = Postgres::start() else { return };
    let cluster = Cluster::start(&pg, 2, UNLIMITED);
    let addrs = [cluster.addr(0), cluster.addr(1)];
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let registrars: Vec<_> = (0..4)
        .map(|worker| {
            let acked = std::sync::Arc::clone(&acked);
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let until = Instant::now() + Duration::from_secs(20);
                for i in 0..200 {
                    if Instant::now() > until || stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let name = format!("w{worker}n{i}");
                    let Ok(stream) = TcpStream::connect(addrs[worker % 2]) else {
                        continue;
                    };
                    let mut stream = stream;
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let welcomed = (|| {
                        stream.recv_msg::<ServerMsg>().ok()??;
                        stream.recv_msg::<ServerMsg>().ok()??;
                        stream.send_msg(&register(&name, PASSWORD)).ok()?;
                        match stream.recv_msg::<ServerMsg>().ok()?? {
                            ServerMsg::Welcome { .. } => Some(()),
                            _ => None,
                        }
                    })();
                    if welcomed.is_some() {
                        acknowledged.push(name);
                        acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                acknowledged
            })
        })
        .collect();
    // Killed in the middle of the stream: once a few registrations have
    // been acknowledged (however loaded the machine), while the workers go
    // on for another half second (at most 20 s and 200 each in all).
    echo_testkit::wait_until(Duration::from_secs(15), || {
        acked.load(std::sync::atomic::Ordering::SeqCst) > 4
    });
    cluster.servers[0]
        .1
        .signal(nix::sys::signal::Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acknowledged: Vec<String> = registrars
        .into_iter()
        .flat_map(|r| r.join().unwrap())
        .collect();
    assert!(
        acknowledged.len() > 4,
        "too few registrations to mean anything: {acknowledged:?}"
    );
    let listed = cluster.admin(&["user", "list"], "");
    let listed = String::from_utf8_lossy(&listed.stdout);
    eprintln!(
        "kill -9 during registrations: {} acknowledged, all checked",
        acknowledged.len()
    );
    for name in &acknowledged {
        assert!(
            listed.contains(name.as_str()),
            "{name} was welcomed but is not stored"
        );
    }
}

#[test]
fn a_database_outage_is_unavailable_then_served_again_without_a_restart() {
    let Some(pg) = Postgres::start() else { return };
    let cluster = Cluster::start(&pg, 2, UNLIMITED);
    let (mut established, token) = Client::welcomed(cluster.addr(0), &register("eve", PASSWORD));
    pg.stop();
    // Echo needs no database.
    assert_eq!(established.echo("still here"), "still here");
    let answer = Client::connect(cluster.addr(1)).ask(&resume(&token));
    assert!(
        matches!(
            answer,
            Answer::Refused {
                code: ErrorCode::Unavailable,
                fatal: true
            }
        ),
        "{answer:?}"
    );
    pg.start_again();
    let back = Instant::now();
    for addr in [cluster.addr(0), cluster.addr(1)] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Client::connect(addr).ask(&login("eve", PASSWORD)) {
                Answer::Welcome(_) => break,
                Answer::Refused {
                    code: ErrorCode::Unavailable,
                    ..
                } if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => panic!("not served again after the database came back: {other:?}"),
            }
        }
    }
    eprintln!(
        "database back: both servers served again within {:?}",
        back.elapsed()
    );
    // A restart under load: every answer is a welcome or `unavailable`,
    // and service goes on after it.
    let started = Instant::now();
    let load: Vec<_> = (0..3)
        .map(|i| {
            let addr = cluster.addr(i % 2);
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while started.elapsed() < Duration::from_secs(4) && answers.len() < 2000 {
                    let answer = Client::connect(addr).ask(&login("eve", PASSWORD));
                    answers.push((started.elapsed(), answer));
                }
                answers
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let restart = started.elapsed();
    pg.restart();
    let restarted = started.elapsed();
    let answers: Vec<_> = load.into_iter().flat_map(|l| l.join().unwrap()).collect();
    let mut gap = (Duration::MAX, Duration::ZERO);
    for (at, answer) in &answers {
        match answer {
            Answer::Welcome(_) => {}
            Answer::Refused {
                code: ErrorCode::Unavailable,
                ..
            } => gap = (gap.0.min(*at), gap.1.max(*at)),
            other => panic!("during a restart: {other:?}"),
        }
    }
    let served_after = answers
        .iter()
        .filter(|(at, answer)| *at > gap.1 && matches!(answer, Answer::Welcome(_)))
        .count();
    eprintln!(
        "pg_ctl restart under load: {} logins answered; restart from {restart:?} to {restarted:?}; unavailable from {:?} to {:?}; {served_after} welcomes after",
        answers.len(),
        gap.0,
        gap.1
    );
    assert!(served_after > 0, "nothing was served after the restart");
    let logs = echo_testkit::read_logs(cluster.servers[1].0.path());
    let warnings = logs.matches("the database is unreachable").count();
    eprintln!("warnings logged by one server over two outages: {warnings}");
    assert!(
        warnings <= 4,
        "one warning per outage, not per request: {warnings}"
    );
}
