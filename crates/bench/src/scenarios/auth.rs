//! The scenarios that log in: a login storm beside established sessions,
//! resumes as fast as possible.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use anyhow::Context;
use echo_proto::{
    ClientMsg, Mode, Secret, ServerMsg,
    ext::{AsyncFrameRead, AsyncFrameWrite},
};
use echo_server::{
    ServerConfig,
    clock::{Clock, SystemClock},
    store::{self, PgUrl, StoreLocation, TokenHash, UserRecord, UserStore},
    test_util::Passwords,
};
use futures_util::StreamExt;
use tokio::{io::AsyncWriteExt, net::TcpStream, time::Instant};

use crate::{
    children::server_config,
    load::{Conn, Handshake, Load, Target, connect_many, ping_pong, say_frame},
    procs::Proc,
    progress::progress,
    spread::Spread,
};

use super::{
    plan::{PASSWORD, Plan},
    results::{ResumeResult, StormResult},
};

/// Writes users (and sessions with known tokens) straight into the file
/// store in `dir` before its server starts.
pub(super) async fn populate(dir: &Path, users: &[String], tokens: bool) -> anyhow::Result<()> {
    let config = server_config(Mode::Auth, dir);
    populate_store(&config.store_location(), users, tokens).await
}

/// Writes users (and sessions with known tokens) straight into the store at
/// `location` before its servers start: one real Argon2id hash shared by
/// all, so setup takes seconds, not an hour of hashing.
pub(crate) async fn populate_store(
    location: &StoreLocation,
    users: &[String],
    tokens: bool,
) -> anyhow::Result<()> {
    let lifetimes = ServerConfig::default().lifetimes();
    let store = store::open(location, lifetimes).await?;
    let passwords = Passwords::start(Passwords::default_workers()).await?;
    let hash = passwords.hash(Secret::new(PASSWORD)).await?;
    let now = SystemClock.now();
    let mut writes = futures_util::stream::iter(users.iter().map(|user| {
        let store = store.clone();
        let hash = hash.clone();
        async move {
            let record = UserRecord {
                name: user.clone(),
                password_hash: hash,
                created: now,
            };
            store.create_user(record).await?;
            if tokens {
                store
                    .create_session(TokenHash::of(&token_of(user)), user, now)
                    .await?;
            }
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(512);
    while let Some(done) = writes.next().await {
        done?;
    }
    Ok(())
}

/// The first token of a pre-made session.
pub(crate) fn token_of(user: &str) -> String {
    format!("bench-token-{user}")
}

/// Scenario 2: established sessions' latency with and without a login storm.
pub async fn login_storm(
    plan: &Plan,
    established: usize,
    dir: &Path,
) -> anyhow::Result<StormResult> {
    let storm = plan.storm;
    let Beside { server, load } = Beside::start(plan, established, dir).await?;
    let (mut quiet, mut stormy, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..plan.reps {
        progress(&format!("login storm rep {}/{}: quiet", rep + 1, plan.reps));
        quiet.push(Beside::p99(&server, load).await?);

        progress(&format!("login storm rep {}/{}: storm", rep + 1, plan.reps));
        let streams = Beside::connect(&server, load).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let workers = login_workers(server.addr, storm, &stop, &count);
        let started = Instant::now();
        let measured = ping_pong(streams, Target::Real, load).await?;
        let elapsed = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.await??;
        }
        stormy.push(measured.quantile_us(0.99));
        rates.push(count.load(Ordering::Relaxed) as f64 / elapsed);
    }
    Ok(StormResult {
        established,
        pace_ms: load.pace_ms(),
        storm,
        p99_ratio: Spread::of(quiet.iter().zip(&stormy).map(|(q, s)| s / q)),
        p99_quiet_us: Spread::of(quiet),
        p99_storm_us: Spread::of(stormy),
        logins_per_sec: Spread::of(rates),
    })
}

/// Scenarios 2 and 2b: a server whose store holds users `e0`, `e1`, ...
/// (the established sessions) and `s0`, `s1`, ... (the logins), and the
/// ping-pong load of the established sessions.
pub(super) struct Beside {
    pub server: Proc,
    pub load: Load,
}

impl Beside {
    pub async fn start(plan: &Plan, established: usize, dir: &Path) -> anyhow::Result<Self> {
        let users: Vec<String> = (0..established)
            .map(|i| format!("e{i}"))
            .chain((0..plan.storm).map(|i| format!("s{i}")))
            .collect();
        populate(dir, &users, false).await?;
        let server = Proc::spawn(&["serve", "--mode", "auth"], dir)?;
        let load = Load {
            connections: established,
            payload: 64,
            depth: 1,
            warmup: plan.warmup,
            duration: plan.duration,
            interval: plan.pace,
        };
        Ok(Self { server, load })
    }

    /// The established sessions, logged in.
    pub async fn connect(server: &Proc, load: Load) -> anyhow::Result<Vec<Conn>> {
        let logins = (0..load.connections)
            .map(|i| Handshake::Login {
                user: format!("e{i}"),
                password: PASSWORD.into(),
            })
            .collect();
        connect_many(server.addr, Target::Real, logins, 50, None).await
    }

    /// The established sessions' p99 round trip, in microseconds, with
    /// nothing else going on.
    pub async fn p99(server: &Proc, load: Load) -> anyhow::Result<f64> {
        let streams = Self::connect(server, load).await?;
        let measured = ping_pong(streams, Target::Real, load).await?;
        Ok(measured.quantile_us(0.99))
    }
}

/// `workers` connections logging in as `s0`, `s1`, ... in a closed loop
/// (the next login as soon as one is answered) until `stop`; `count` counts
/// the logins.
pub(crate) fn login_workers(
    addr: std::net::SocketAddr,
    workers: usize,
    stop: &Arc<AtomicBool>,
    count: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<()>>> {
    (0..workers)
        .map(|i| {
            let (stop, count) = (Arc::clone(stop), Arc::clone(count));
            let handshake = Handshake::Login {
                user: format!("s{i}"),
                password: PASSWORD.into(),
            };
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut stream = TcpStream::connect(addr).await?;
                    crate::load::handshake_on(&mut stream, &handshake).await?;
                    count.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect()
}

/// Scenario 3: new connection + `resume` + one `say`, as fast as possible.
pub async fn resume(plan: &Plan, dir: &Path) -> anyhow::Result<ResumeResult> {
    let workers = plan.resume_workers;
    let (addr, _server, users) = match (plan.target, &plan.target_store) {
        (Some(addr), Some(url)) => {
            // Users of this run only: the database outlives it.
            let users: Vec<String> = (0..workers)
                .map(|i| format!("r{}x{i}", std::process::id()))
                .collect();
            let url =
                PgUrl::parse(url, std::env::var("PGPASSWORD").ok()).map_err(anyhow::Error::msg)?;
            let location = StoreLocation::Postgres {
                url: Box::new(url),
                options: echo_server::store::PgOptions::default(),
            };
            populate_store(&location, &users, true).await?;
            (addr, None, users)
        }
        (Some(_), None) => anyhow::bail!(
            "resume with --target needs --store URL: the target's database, where the bench makes its users"
        ),
        (None, _) => {
            let users: Vec<String> = (0..workers).map(|i| format!("r{i}")).collect();
            populate(dir, &users, true).await?;
            let server = Proc::spawn(&["serve", "--mode", "auth"], dir)?;
            (server.addr, Some(server), users)
        }
    };
    let mut tokens: Vec<String> = users.iter().map(|u| token_of(u)).collect();
    let mut rates = Vec::new();
    for rep in 0..plan.reps {
        progress(&format!("resume rep {}/{}", rep + 1, plan.reps));
        rates.push(resume_round(plan, &[addr], &mut tokens).await?);
    }
    Ok(ResumeResult {
        workers,
        resumes_per_sec: Spread::of(rates),
    })
}

/// One measured round of resumes: a worker per token, spread over
/// `addrs`, each connect + `resume` + one `say` in a closed loop; the rate.
/// The tokens are replaced by the ones the workers end with.
pub(crate) async fn resume_round(
    plan: &Plan,
    addrs: &[SocketAddr],
    tokens: &mut Vec<String>,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let (from, end) = (start + plan.warmup, start + plan.warmup + plan.duration);
    let frame = say_frame(64);
    let tasks: Vec<_> = tokens
        .drain(..)
        .enumerate()
        .map(|(i, token)| {
            let addr = addrs[i % addrs.len()];
            tokio::spawn(resume_loop(addr, token, frame.clone(), from, end))
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        let (count, token) = task.await??;
        total += count;
        tokens.push(token);
    }
    Ok(total as f64 / plan.duration.as_secs_f64())
}

async fn resume_loop(
    addr: SocketAddr,
    mut token: String,
    say: bytes::Bytes,
    from: Instant,
    end: Instant,
) -> anyhow::Result<(u64, String)> {
    let mut count = 0;
    while Instant::now() < end {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        stream
            .send_msg(&ClientMsg::Resume {
                token: Secret::new(token.clone()),
            })
            .await?;
        loop {
            match stream
                .recv_msg::<ServerMsg>()
                .await?
                .context("server closed")?
            {
                ServerMsg::Welcome { token: next, .. } => {
                    token = next.expose().to_owned();
                    break;
                }
                ServerMsg::Hello { .. } | ServerMsg::AskAuth { .. } => {}
                other => anyhow::bail!("resume refused: {other:?}"),
            }
        }
        stream.write_all(&say).await?;
        let reply = stream
            .recv_msg::<ServerMsg>()
            .await?
            .context("server closed")?;
        anyhow::ensure!(
            matches!(reply, ServerMsg::Reply { last: true, .. }),
            "bad reply {reply:?}"
        );
        if Instant::now() >= from {
            count += 1;
        }
    }
    Ok((count, token))
}
