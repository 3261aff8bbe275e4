//! Scenario 2b: login attempts at a fixed rate (open loop) beside
//! established sessions. The closed-loop storm (scenario 2) sends the next
//! login as soon as one is answered, so it saturates both cores together
//! with the load generator; a real deployment sees logins arrive at some
//! rate whatever the answers. This scenario sends `rate` attempts a second,
//! by default half the hashing capacity measured first with the storm's
//! closed loop, and reports the established sessions' p99 quiet and during.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::Serialize;
use tokio::{
    net::TcpStream,
    sync::Semaphore,
    time::{Instant, MissedTickBehavior},
};

use super::{
    auth::{Beside, login_workers},
    plan::{PASSWORD, Plan},
};
use crate::{
    load::{Handshake, Load, Target, handshake_on, ping_pong},
    procs::Proc,
    progress::progress,
    spread::Spread,
};

/// Attempts in flight at once, at most: beyond it the server is not keeping
/// up, and the rest are counted as not sent.
const MAX_IN_FLIGHT: usize = 2_000;
/// Time one attempt may take before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Scenario 2b's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct RateResult {
    pub established: usize,
    /// Milliseconds between two messages of one established session;
    /// `None`: closed-loop ping-pong.
    pub pace_ms: Option<f64>,
    /// Login attempts a second asked for; `None` when it was to be derived
    /// from a capacity that could not be measured (no login succeeded).
    pub rate_per_sec: Option<f64>,
    /// Logins a second in the closed loop, when the rate was derived from it.
    pub capacity_per_sec: Option<f64>,
    pub p99_quiet_us: Spread,
    pub p99_during_us: Spread,
    pub p99_ratio: Spread,
    /// Logins a second that were answered with `welcome`.
    pub answered_per_sec: Spread,
    /// Attempts that failed, timed out or could not be sent, in all runs.
    pub failed: u64,
}

/// Runs scenario 2b: `established` sessions ping-pong while login attempts
/// arrive at `rate` a second (half the measured capacity when `None`).
pub async fn login_rate(
    plan: &Plan,
    established: usize,
    rate: Option<f64>,
    dir: &Path,
) -> anyhow::Result<RateResult> {
    let Beside { server, load } = Beside::start(plan, established, dir).await?;
    let capacity = match rate {
        Some(_) => None,
        None => Some(capacity(server.addr, plan).await?),
    };
    let rate = match (rate, capacity) {
        (Some(rate), _) => rate.max(0.1),
        (None, Some(capacity)) if capacity > 0.0 => capacity / 2.0,
        // No login got through in the closed loop: there is no rate to
        // derive, and a zero would read as a figure.
        _ => {
            return Ok(RateResult::unmeasured(
                established,
                load.pace_ms(),
                capacity,
            ));
        }
    };
    let (mut quiet, mut during, mut answered) = (Vec::new(), Vec::new(), Vec::new());
    let mut failed = 0;
    for rep in 0..plan.reps {
        progress(&format!("login rate rep {}/{}: quiet", rep + 1, plan.reps));
        quiet.push(Beside::p99(&server, load).await?);

        progress(&format!(
            "login rate rep {}/{}: {rate:.0}/s",
            rep + 1,
            plan.reps
        ));
        let (p99, logins, failures) = under_storm(&server, load, plan, rate).await?;
        during.push(p99);
        answered.push(logins);
        failed += failures;
    }
    Ok(RateResult {
        established,
        pace_ms: load.pace_ms(),
        rate_per_sec: Some(rate),
        capacity_per_sec: capacity,
        p99_ratio: Spread::of(quiet.iter().zip(&during).map(|(q, d)| d / q)),
        p99_quiet_us: Spread::of(quiet),
        p99_during_us: Spread::of(during),
        answered_per_sec: Spread::of(answered),
        failed,
    })
}

/// One rep under the open loop of logins at `rate`: the sessions' p99
/// (µs), the logins answered a second, and the attempts that failed.
async fn under_storm(
    server: &Proc,
    load: Load,
    plan: &Plan,
    rate: f64,
) -> anyhow::Result<(f64, f64, u64)> {
    let streams = Beside::connect(server, load).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let generator = tokio::spawn(open_loop(
        server.addr,
        plan.storm.max(1),
        rate,
        Arc::clone(&stop),
        Arc::clone(&counts),
    ));
    let started = Instant::now();
    let measured = ping_pong(streams, Target::Real, load).await?;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    generator.await?;
    let answered = counts.ok.load(Ordering::Relaxed) as f64 / elapsed;
    let failed = counts.failed.load(Ordering::Relaxed);
    Ok((measured.quantile_us(0.99), answered, failed))
}

impl RateResult {
    /// The result when no rate could be derived: every figure not measured.
    pub(crate) fn unmeasured(
        established: usize,
        pace_ms: Option<f64>,
        capacity: Option<f64>,
    ) -> Self {
        let none = Spread::of([]);
        Self {
            established,
            pace_ms,
            rate_per_sec: None,
            capacity_per_sec: capacity,
            p99_quiet_us: none,
            p99_during_us: none,
            p99_ratio: none,
            answered_per_sec: none,
            failed: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// The hashing capacity: logins a second in the storm's closed loop.
async fn capacity(addr: std::net::SocketAddr, plan: &Plan) -> anyhow::Result<f64> {
    progress("login rate: measuring the login capacity");
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let workers = login_workers(addr, plan.storm.max(1), &stop, &count);
    tokio::time::sleep(plan.warmup).await;
    let before = count.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(plan.duration).await;
    let logins = count.load(Ordering::Relaxed) - before;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await??;
    }
    Ok(logins as f64 / elapsed)
}

/// Starts one login attempt every `1 / rate` seconds until `stop`, whatever
/// the answers, with at most [`MAX_IN_FLIGHT`] waiting at once.
async fn open_loop(
    addr: std::net::SocketAddr,
    users: usize,
    rate: f64,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut attempts = tokio::task::JoinSet::new();
    let mut next_user = 0;
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let handshake = Handshake::Login {
            user: format!("s{}", next_user % users),
            password: PASSWORD.into(),
        };
        next_user += 1;
        let counts = Arc::clone(&counts);
        attempts.spawn(async move {
            let attempt = async {
                let mut stream = TcpStream::connect(addr).await?;
                handshake_on(&mut stream, &handshake).await
            };
            let done = tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await;
            let counter = match done {
                Ok(Ok(())) => &counts.ok,
                _ => &counts.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    while attempts.join_next().await.is_some() {}
}
