//! Scenario 1 (echo): the real server and the reference alternately, and
//! over TLS the handshake rates too.

use std::{net::SocketAddr, path::Path};

use echo_proto::Mode;
use tokio_rustls::TlsConnector;

use super::{
    plan::{PASSWORD, Plan},
    results::{EchoRow, Sample},
};
use crate::{
    load::{Handshake, Load, Measured, Target, connect_many, ping_pong},
    procs::Proc,
    progress::progress,
    spread::Spread,
    tls::{BenchTls, HandshakeResult, handshake_rate},
};

fn sample(measured: &Measured, cpu_before: f64, cpu_after: f64, wall: f64) -> Sample {
    let q = |q: f64| measured.quantile_us(q);
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
    let (real, reference, reference_target) = endpoints(plan, mode, &tls_args, dir)?;
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
                let pair = (&real, &reference, reference_target);
                rows.push(echo_row(plan, pair, load, connector.as_ref()).await?);
            }
        }
    }
    let handshakes = match &tls {
        Some(tls) => Some(handshakes(plan, tls, &real, &reference).await?),
        None => None,
    };
    Ok((rows, handshakes))
}

/// The two servers to compare, and how the second is measured.
fn endpoints(
    plan: &Plan,
    mode: &str,
    tls_args: &[&str],
    dir: &Path,
) -> anyhow::Result<(Endpoint, Endpoint, Target)> {
    Ok(if plan.metrics {
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
                let args = [&["serve", "--mode", mode][..], tls_args].concat();
                Endpoint::Local(Proc::spawn(&args, dir)?)
            }
        };
        let args = [&["reference"][..], tls_args].concat();
        let reference = Endpoint::Local(Proc::spawn(&args, dir)?);
        (real, reference, Target::Reference)
    })
}

/// One line of the echo table: `plan.reps` repetitions of `load` on both
/// servers, alternately.
async fn echo_row(
    plan: &Plan,
    (real, reference, reference_target): (&Endpoint, &Endpoint, Target),
    load: Load,
    tls: Option<&TlsConnector>,
) -> anyhow::Result<EchoRow> {
    let (connections, payload, depth) = (load.connections, load.payload, load.depth);
    let (mut reals, mut refs) = (Vec::new(), Vec::new());
    for rep in 0..plan.reps {
        progress(&format!(
            "echo c={connections} payload={payload} depth={depth} rep {}/{}",
            rep + 1,
            plan.reps
        ));
        reals.push(measure(real, Target::Real, plan.mode, load, tls).await?);
        let reference = measure(reference, reference_target, plan.mode, load, tls);
        refs.push(reference.await?);
    }
    let ratio =
        |f: fn(&Sample) -> f64| Spread::of(reals.iter().zip(&refs).map(|(r, b)| f(r) / f(b)));
    Ok(EchoRow {
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
    })
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
