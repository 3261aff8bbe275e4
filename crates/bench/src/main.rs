//! `echo-bench`: measures echo-server against a plain Tokio echo on the same
//! machine, in the style of `redis-benchmark`. See docs/BENCHMARKS.md.

mod children;
mod kernel;
mod load;
mod procs;
mod progress;
mod report;
mod scenarios;
mod spread;
mod stores;
mod tls;

use std::{process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use echo_proto::Mode;
use report::{Report, machine, print_table};
use scenarios::Plan;

/// Load generator for echo-server. Every echo scenario measures the real
/// server and a plain Tokio echo alternately in the same run, so the result
/// is a ratio that holds on a noisy machine.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    child: Option<Child>,
    /// Scenarios to run
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Scenario::Echo, Scenario::LoginStorm, Scenario::LoginRate, Scenario::Resume, Scenario::Idle])]
    scenario: Vec<Scenario>,
    /// Connection counts for the echo scenario
    #[arg(long, value_delimiter = ',', default_values_t = [1, 50, 1000])]
    connections: Vec<usize>,
    /// Payload sizes in bytes for the echo scenario
    #[arg(long, value_delimiter = ',', default_values_t = [64, 16384])]
    payload: Vec<usize>,
    /// Messages in flight per connection (1 = ping-pong)
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16])]
    depth: Vec<usize>,
    /// Seconds measured per run
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Seconds of warm-up before each measured run
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Repetitions; the table shows medians with min-max
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Connections logging in continuously in the login storm (and the
    /// users the login-rate scenario cycles through)
    #[arg(long, default_value_t = 50)]
    storm: usize,
    /// Login attempts a second in the login-rate scenario [default: half
    /// the capacity measured in a closed loop first]
    #[arg(long, value_name = "N")]
    rate: Option<f64>,
    /// Established sessions during the login storm and the login rate
    #[arg(long, default_value_t = 50)]
    established: usize,
    /// Milliseconds between two messages of one established session in
    /// the login storm and the login rate (paced, like people typing); 0:
    /// ping-pong in a closed loop (the sessions alone then take every
    /// cycle the machine has)
    #[arg(long, value_name = "MS", default_value_t = 20.0)]
    pace: f64,
    /// Concurrent workers in the resume scenario
    #[arg(long, default_value_t = 32)]
    resume_workers: usize,
    /// Established sessions in the upgrade scenario
    #[arg(long, default_value_t = 200)]
    sessions: usize,
    /// Upgrades of the server in the upgrade scenario
    #[arg(long, default_value_t = 3)]
    upgrades: usize,
    /// Idle authenticated connections in the memory scenario
    #[arg(long, default_value_t = 10_000)]
    idle_connections: usize,
    /// How the idle scenario's sessions get to the conversation: `auth`
    /// (each resumes a session of its own) or `ident`
    #[arg(long, value_enum, default_value_t = ModeArg::Auth)]
    idle_mode: ModeArg,
    /// Idle scenario: spread the client sockets over 127.0.0.1..N, so one
    /// address's port range is not the limit
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..))]
    sources: u8,
    /// How echo connections get to the conversation: `ident`, or `auth`
    /// (each connection registers user benchN, or logs in as it)
    #[arg(long, value_enum, default_value_t = ModeArg::Ident)]
    mode: ModeArg,
    /// Measure the echo-server at HOST:PORT instead of starting one (echo
    /// scenario, and resume with --store; its CPU time is then not shown)
    #[arg(long, value_name = "HOST:PORT")]
    target: Option<std::net::SocketAddr>,
    /// A smoke run of a few seconds (CI): tiny counts, one repetition
    #[arg(long)]
    quick: bool,
    /// Print the results as JSON instead of a table
    #[arg(long)]
    json: bool,
    /// Echo scenario: measure the cost of the metrics instead: the server
    /// with its metrics port on and scraped every second against the same
    /// server without it (in the table's reference column)
    #[arg(long)]
    metrics: bool,
    /// Also compare the stores: resumes, logins and registrations per
    /// second on SQLite (one and two servers on one file) and on
    /// PostgreSQL at URL, with one and two servers (a scratch database is
    /// created there and dropped after); `--store sqlite`: SQLite only.
    /// With --target: the target's database, where the resume scenario
    /// makes its users and sessions
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Echo scenario over TLS: the server with --tls against a reference
    /// TLS echo (tokio-rustls, same provider), plus TLS handshakes per
    /// second, full and resumed
    #[arg(long)]
    tls: bool,
}

/// A certificate and key handed to a child.
#[derive(Debug, Clone, clap::Args)]
struct ChildTls {
    #[arg(long)]
    tls_cert: Option<std::path::PathBuf>,
    #[arg(long)]
    tls_key: Option<std::path::PathBuf>,
}

impl ChildTls {
    fn files(&self) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
        self.tls_cert.clone().zip(self.tls_key.clone())
    }
}

#[derive(Debug, Subcommand)]
enum Child {
    /// (internal) run the real server for a benchmark
    #[command(hide = true)]
    Serve {
        #[arg(long, value_enum)]
        mode: ModeArg,
        #[arg(long)]
        metrics: bool,
        #[command(flatten)]
        tls: ChildTls,
        #[arg(long)]
        store: Option<String>,
    },
    /// (internal) run the reference echo
    #[command(hide = true)]
    Reference {
        #[command(flatten)]
        tls: ChildTls,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Echo,
    LoginStorm,
    LoginRate,
    Resume,
    Idle,
    /// Sessions carried across `echo-server upgrade` (not in the default
    /// list: it needs the echo-server binary beside this one)
    Upgrade,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Ident,
    Auth,
}

impl From<ModeArg> for Mode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::Ident => Mode::Ident,
            ModeArg::Auth => Mode::Auth,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.child {
        Some(Child::Serve {
            mode,
            metrics,
            tls,
            store,
        }) => std::env::current_dir()
            .context("no working directory")
            .and_then(|dir| {
                let (mode, store) = ((*mode).into(), store.as_deref());
                children::serve(mode, &dir, *metrics, tls.files(), store)
            }),
        Some(Child::Reference { tls }) => children::reference(tls.files()),
        None => bench(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("echo-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(cli: &Cli) -> anyhow::Result<()> {
    raise_open_file_limit(cli);
    let plan = plan(cli);
    let established = if cli.quick { 4 } else { cli.established };
    let runtime = tokio::runtime::Runtime::new()?;
    let mut report = Report {
        machine: machine(),
        metrics_compared: cli.metrics,
        tls: cli.tls,
        ..Report::default()
    };
    runtime.block_on(run(cli, &plan, established, &mut report))?;
    progress::done();
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// The scenarios' knobs: `--quick`'s, or the command line's.
fn plan(cli: &Cli) -> Plan {
    if cli.quick {
        Plan {
            mode: cli.mode.into(),
            target: cli.target,
            connections: vec![1, 8],
            payloads: vec![64],
            depths: vec![1, 4],
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(300),
            reps: 1,
            metrics: cli.metrics,
            tls: cli.tls,
            storm: 4,
            pace: pace(cli.pace),
            target_store: cli.target.and(cli.store.clone()),
            resume_workers: 4,
            idle_connections: 200,
            idle_mode: cli.idle_mode.into(),
            sources: cli.sources.into(),
        }
    } else {
        Plan {
            mode: cli.mode.into(),
            target: cli.target,
            connections: cli.connections.clone(),
            payloads: cli.payload.clone(),
            depths: cli.depth.clone(),
            warmup: Duration::from_secs_f64(cli.warmup),
            duration: Duration::from_secs_f64(cli.duration),
            reps: cli.reps.max(1),
            metrics: cli.metrics,
            tls: cli.tls,
            storm: cli.storm,
            pace: pace(cli.pace),
            target_store: cli.target.and(cli.store.clone()),
            resume_workers: cli.resume_workers,
            idle_connections: cli.idle_connections,
            idle_mode: cli.idle_mode.into(),
            sources: cli.sources.into(),
        }
    }
}

/// Runs the scenarios asked for, each in a fresh directory, into `report`.
async fn run(
    cli: &Cli,
    plan: &Plan,
    established: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    for scenario in &cli.scenario {
        // A fresh directory (store and logs) per scenario.
        let dir = tempfile::tempdir()?;
        match scenario {
            Scenario::Echo => {
                let (rows, handshakes) = scenarios::echo(plan, dir.path()).await?;
                report.echo = rows;
                report.tls_handshakes = handshakes;
            }
            Scenario::LoginStorm => {
                report.login_storm =
                    Some(scenarios::login_storm(plan, established, dir.path()).await?);
            }
            Scenario::LoginRate => {
                let result = scenarios::login_rate(plan, established, cli.rate, dir.path());
                report.login_rate = Some(result.await?);
            }
            Scenario::Resume => report.resume = Some(scenarios::resume(plan, dir.path()).await?),
            Scenario::Idle => report.idle = Some(scenarios::idle(plan, dir.path()).await?),
            Scenario::Upgrade => {
                let run = match cli.quick {
                    true => scenarios::UpgradeRun {
                        sessions: 20,
                        upgrades: 1,
                        quick: true,
                    },
                    false => scenarios::UpgradeRun {
                        sessions: cli.sessions,
                        upgrades: cli.upgrades,
                        quick: false,
                    },
                };
                let result = scenarios::upgrade(plan, run, dir.path());
                report.upgrade = Some(result.await?);
            }
        }
    }
    if let Some(url) = cli.store.as_ref().filter(|_| cli.target.is_none()) {
        report.stores = Some(stores::compare(plan, url).await?);
    }
    Ok(())
}

/// Lets one process hold every client socket of the idle scenario (the
/// server child inherits the limit and holds as many, one per session).
fn raise_open_file_limit(cli: &Cli) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let sessions = cli.idle_connections + 2 * scenarios::ACTIVE + 1;
    let wanted = sessions as u64 + 1024;
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let target = wanted.min(hard);
        if soft < target && setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_err() {
            eprintln!("echo-bench: cannot raise the open-file limit to {target}");
        }
        if hard < wanted && cli.scenario.contains(&Scenario::Idle) && !cli.quick {
            eprintln!(
                "echo-bench: the open-file limit ({hard}) is below the {wanted} the idle scenario needs: \
                 it is what limits the sessions here; raise it (ulimit -Hn) or lower --idle-connections"
            );
        }
    }
}

/// The established sessions' pace: none (closed loop) for 0.
fn pace(ms: f64) -> Option<Duration> {
    (ms > 0.0).then(|| Duration::from_secs_f64(ms / 1000.0))
}
