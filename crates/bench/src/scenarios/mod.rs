//! The scenarios of docs/BENCHMARKS.md: their results, the measurement
//! shared by all, and scenario 1 (echo); `auth.rs` has the scenarios that
//! log in (login storm, resume, idle sessions).

mod auth;
mod rate;

pub use auth::{idle, login_storm, resume};
pub(crate) use auth::{login_workers, populate_store, resume_round, token_of};
pub use rate::{RateResult, login_rate};

use std::{net::SocketAddr, path::Path, time::Duration};

use echo_proto::Mode;
use serde::Serialize;

use tokio_rustls::TlsConnector;

use crate::{
    load::{Handshake, Load, Measured, Target, connect_many, ping_pong},
    procs::Proc,
    progress,
    tls::{BenchTls, HandshakeResult, handshake_rate},
};

/// The password of every benchmark user.
pub(crate) const PASSWORD: &str = "bench horse battery staple";

/// Knobs shared by the scenarios.
#[derive(Debug, Clone)]
pub struct Plan {
    /// How echo connections reach the conversation.
    pub mode: Mode,
    /// An external server to measure instead of starting one.
    pub target: Option<SocketAddr>,
    pub connections: Vec<usize>,
    pub payloads: Vec<usize>,
    pub depths: Vec<usize>,
    pub warmup: Duration,
    pub duration: Duration,
    pub reps: usize,
    /// Compare the server with its metrics port scraped against itself
    /// without, instead of against the reference echo.
    pub metrics: bool,
    /// The echo scenario over TLS.
    pub tls: bool,
    pub storm: usize,
    /// Time between two messages of one established session in scenarios
    /// 2 and 2b; `None`: closed-loop ping-pong.
    pub pace: Option<Duration>,
    /// With `target`: the target's database (`--store URL`), where the
    /// resume scenario makes its users and sessions.
    pub target_store: Option<String>,
    pub resume_workers: usize,
    pub idle_connections: usize,
}

/// A median with the smallest and largest of the repetitions.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// One target's numbers in one repetition.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    pub round_trips_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub server_cpu_percent: f64,
}

/// Scenario 1, one line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct EchoRow {
    pub connections: usize,
    pub payload: usize,
    pub depth: usize,
    pub real: Vec<Sample>,
    pub reference: Vec<Sample>,
    pub rps_ratio: Spread,
    pub p99_ratio: Spread,
    pub real_rps: Spread,
    pub reference_rps: Spread,
    pub real_p99_us: Spread,
    pub reference_p99_us: Spread,
}

/// Scenario 2.
#[derive(Debug, Clone, Serialize)]
pub struct StormResult {
    pub established: usize,
    /// Milliseconds between two messages of one established session;
    /// `None`: closed-loop ping-pong.
    pub pace_ms: Option<f64>,
    pub storm: usize,
    pub p99_quiet_us: Spread,
    pub p99_storm_us: Spread,
    pub p99_ratio: Spread,
    pub logins_per_sec: Spread,
}

/// Scenario 3.
#[derive(Debug, Clone, Serialize)]
pub struct ResumeResult {
    pub workers: usize,
    pub resumes_per_sec: Spread,
}

/// Scenario 4.
#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    pub connections: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub peak_rss_kib: u64,
    pub kib_per_connection: f64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut values: Vec<f64> = values.into_iter().collect();
        values.sort_by(f64::total_cmp);
        let n = values.len();
        if n == 0 {
            return Self {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Self {
            median,
            min: values[0],
            max: values[n - 1],
        }
    }
}

fn sample(measured: &Measured, cpu_before: f64, cpu_after: f64, wall: f64) -> Sample {
    let q = |q: f64| measured.latency.value_at_quantile(q) as f64;
    Sample {
        round_trips_per_sec: measured.round_trips as f64 / measured.seconds,
        p50_us: q(0.5),
        p99_us: q(0.99),
        p999_us: q(0.999),
        server_cpu_percent: 100.0 * (cpu_after - cpu_before) / wall,
    }
}

/// A server to measure: started here (its CPU time is then known), or
/// given by address.
enum Endpoint {
    Local(Proc),
    External(SocketAddr),
}

impl Endpoint {
    fn addr(&self) -> SocketAddr {
        match self {
            Endpoint::Local(proc) => proc.addr,
            Endpoint::External(addr) => *addr,
        }
    }

    /// CPU seconds used so far; 0 for a server elsewhere.
    fn cpu_secs(&self) -> anyhow::Result<f64> {
        match self {
            Endpoint::Local(proc) => Ok(proc.stats()?.cpu_secs),
            Endpoint::External(_) => Ok(0.0),
        }
    }
}

/// Measures one target once: fresh connections, then the closed loop.
async fn measure(
    endpoint: &Endpoint,
    target: Target,
    mode: Mode,
    load: Load,
    tls: Option<&TlsConnector>,
) -> anyhow::Result<Sample> {
    let handshakes = (0..load.connections)
        .map(|i| match mode {
            Mode::Ident => Handshake::Ident,
            Mode::Auth => Handshake::Account {
                user: format!("bench{i}"),
                password: PASSWORD.into(),
            },
        })
        .collect();
    let streams = connect_many(endpoint.addr(), target, handshakes, 100, tls).await?;
    let before = endpoint.cpu_secs()?;
    let started = std::time::Instant::now();
    let measured = ping_pong(streams, target, load).await?;
    let wall = started.elapsed().as_secs_f64();
    let after = endpoint.cpu_secs()?;
    Ok(sample(&measured, before, after, wall))
}

/// Scenario 1: echo throughput and latency, real and reference alternately
/// (over TLS with `plan.tls`, and then the handshake rates too).
pub async fn echo(
    plan: &Plan,
    dir: &Path,
) -> anyhow::Result<(Vec<EchoRow>, Option<HandshakeResult>)> {
    let mode = match plan.mode {
        Mode::Ident => "ident",
        Mode::Auth => "auth",
    };
    let tls = match plan.tls {
        true => Some(BenchTls::generate(dir)?),
        false => None,
    };
    let tls_args = tls.as_ref().map(BenchTls::args);
    let tls_args: Vec<&str> = tls_args.iter().flatten().map(String::as_str).collect();
    let connector = tls.as_ref().map(|tls| tls.connector(false)).transpose()?;
    let (real, reference, reference_target) = if plan.metrics {
        // The cost of the metrics: the same server with its port on and
        // scraped, against itself without; each in a directory of its own.
        let with = dir.join("with-metrics");
        std::fs::create_dir_all(&with)?;
        let real = Proc::spawn(&["serve", "--mode", mode, "--metrics"], &with)?;
        let without = Proc::spawn(&["serve", "--mode", mode], dir)?;
        (
            Endpoint::Local(real),
            Endpoint::Local(without),
            Target::Real,
        )
    } else {
        let real = match plan.target {
            Some(addr) => Endpoint::External(addr),
            None => {
                let args = [&["serve", "--mode", mode][..], &tls_args].concat();
                Endpoint::Local(Proc::spawn(&args, dir)?)
            }
        };
        let args = [&["reference"][..], &tls_args].concat();
        let reference = Endpoint::Local(Proc::spawn(&args, dir)?);
        (real, reference, Target::Reference)
    };
    let mut rows = Vec::new();
    for &connections in &plan.connections {
        for &payload in &plan.payloads {
            for &depth in &plan.depths {
                let load = Load {
                    connections,
                    payload,
                    depth,
                    warmup: plan.warmup,
                    duration: plan.duration,
                    interval: None,
                };
                let (mut reals, mut refs) = (Vec::new(), Vec::new());
                for rep in 0..plan.reps {
                    progress(&format!(
                        "echo c={connections} payload={payload} depth={depth} rep {}/{}",
                        rep + 1,
                        plan.reps
                    ));
                    let tls = connector.as_ref();
                    reals.push(measure(&real, Target::Real, plan.mode, load, tls).await?);
                    let reference = measure(&reference, reference_target, plan.mode, load, tls);
                    refs.push(reference.await?);
                }
                let ratio = |f: fn(&Sample) -> f64| {
                    Spread::of(reals.iter().zip(&refs).map(|(r, b)| f(r) / f(b)))
                };
                rows.push(EchoRow {
                    connections,
                    payload,
                    depth,
                    rps_ratio: ratio(|s| s.round_trips_per_sec),
                    p99_ratio: ratio(|s| s.p99_us),
                    real_rps: Spread::of(reals.iter().map(|s| s.round_trips_per_sec)),
                    reference_rps: Spread::of(refs.iter().map(|s| s.round_trips_per_sec)),
                    real_p99_us: Spread::of(reals.iter().map(|s| s.p99_us)),
                    reference_p99_us: Spread::of(refs.iter().map(|s| s.p99_us)),
                    real: reals,
                    reference: refs,
                });
            }
        }
    }
    let handshakes = match &tls {
        Some(tls) => Some(handshakes(plan, tls, &real, &reference).await?),
        None => None,
    };
    Ok((rows, handshakes))
}

/// TLS handshakes per second on both servers, full and resumed, alternately.
async fn handshakes(
    plan: &Plan,
    tls: &BenchTls,
    real: &Endpoint,
    reference: &Endpoint,
) -> anyhow::Result<HandshakeResult> {
    let workers = plan
        .connections
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .clamp(1, 16);
    let mut runs: [Vec<f64>; 4] = Default::default();
    let mut resumed_share: f64 = 1.0;
    for rep in 0..plan.reps {
        progress(&format!("TLS handshakes rep {}/{}", rep + 1, plan.reps));
        for (i, resume) in [false, true].into_iter().enumerate() {
            let connector = tls.connector(resume)?;
            let targets = [(real, Target::Real), (reference, Target::Reference)];
            for (j, (endpoint, target)) in targets.into_iter().enumerate() {
                let (addr, time) = (endpoint.addr(), plan.duration);
                let rate = handshake_rate(addr, target, &connector, workers, time);
                let (rate, share) = rate.await?;
                runs[i * 2 + j].push(rate);
                if resume {
                    resumed_share = resumed_share.min(share);
                }
            }
        }
    }
    let [full_real, full_reference, resumed_real, resumed_reference] = runs.map(Spread::of);
    Ok(HandshakeResult {
        workers,
        full_real,
        full_reference,
        resumed_real,
        resumed_reference,
        resumed_share,
    })
}
