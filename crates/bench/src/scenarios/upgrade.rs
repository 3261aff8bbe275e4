//! The upgrade scenario: N established sessions (the real client's
//! library, each with its own token file) send lines continuously while
//! the real `echo-server` binary is upgraded K times (`echo-server
//! upgrade`, as an operator runs it). Every session must carry on: no line
//! lost or doubled, no connection refused, no password asked.
//!
//! It runs the `echo-server` beside this program (the same build profile),
//! not a child of this program: an upgrade starts the binary at the
//! server's own path again.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, bail};
use echo_client::TokenJar;
use echo_proto::{Mode, Secret};
use nix::{sys::signal, unistd::Pid};
use tokio::time::Instant;

use crate::{children::server_config, progress::progress};

use super::{
    auth::{populate_store, token_of},
    plan::Plan,
    results::UpgradeResult,
    upgrade_session::{SessionCounts, run_session},
};

/// The real server, started from its binary.
struct RealServer {
    addr: std::net::SocketAddr,
    child: Child,
    /// The process serving now: the child, then each upgrade's new one.
    serving: u32,
}

/// The `echo-server` binary beside this program.
fn server_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let binary = exe.with_file_name("echo-server");
    if !binary.exists() {
        bail!(
            "the upgrade scenario runs {}, which is not built: cargo build --release -p echo-server",
            binary.display()
        );
    }
    Ok(binary)
}

impl RealServer {
    /// Starts `binary` in auth mode on a free port of 127.0.0.1, with the
    /// bench's per-address limits lifted (every session comes from there).
    fn start(binary: &Path, dir: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", "0", "--mode", "auth"])
            .args(["--max-connections", "50000"])
            .args(["--max-connections-per-ip", "50000"])
            .args(["--max-handshakes-per-ip", "50000"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--log-dir")
            .arg(dir.join("logs"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        lines.read_line(&mut line)?;
        // Every new process inherits this pipe: keep reading it, so that
        // none of them writes to a pipe nobody reads.
        std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            bail!("echo-server did not start: {line:?}");
        };
        let addr = addr.split(' ').next().unwrap_or_default().parse()?;
        let serving = child.id();
        Ok(Self {
            addr,
            child,
            serving,
        })
    }

    /// `echo-server upgrade` on the server's data directory; remembers the
    /// new process.
    async fn upgrade(&mut self, binary: &Path, dir: &Path) -> anyhow::Result<()> {
        let out = tokio::process::Command::new(binary)
            .arg("upgrade")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .stdin(Stdio::null())
            .output()
            .await?;
        let printed = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "echo-server upgrade failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // `upgraded: pid N serves port P; pid M is draining`
        let pid = printed
            .strip_prefix("upgraded: pid ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|pid| pid.parse().ok())
            .with_context(|| format!("echo-server upgrade said {printed:?}"))?;
        self.serving = pid;
        Ok(())
    }

    /// Stops the serving process (SIGTERM) and waits for the first one.
    fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.serving) {
            let _ = signal::kill(Pid::from_raw(pid), signal::Signal::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// How many sessions, through how many upgrades; `quick`: shorter waits
/// (half a second before the first upgrade, one after each, instead of
/// one and two).
#[derive(Debug, Clone, Copy)]
pub struct UpgradeRun {
    pub sessions: usize,
    pub upgrades: usize,
    pub quick: bool,
}

/// Scenario 6: `run.sessions` sessions through `run.upgrades` upgrades.
pub async fn upgrade(plan: &Plan, run: UpgradeRun, dir: &Path) -> anyhow::Result<UpgradeResult> {
    let UpgradeRun {
        sessions,
        upgrades,
        quick,
    } = run;
    let binary = server_binary()?;
    let users: Vec<String> = (0..sessions).map(|i| format!("u{i}")).collect();
    populate_store(
        &server_config(Mode::Auth, dir).store_location(),
        &users,
        true,
    )
    .await?;
    let mut server = RealServer::start(&binary, dir)?;
    let name = server.addr.to_string();
    let (settle, interval) = match quick {
        true => (Duration::from_millis(500), Duration::from_secs(1)),
        false => (Duration::from_secs(1), Duration::from_secs(2)),
    };
    let end = Instant::now() + settle + interval * (upgrades as u32 + 1);
    let asked = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let mut tasks = Vec::new();
    for user in &users {
        let jar = TokenJar::new(dir.join("jars").join(format!("{user}.json")));
        jar.set(&name, &Secret::new(token_of(user)))?;
        let asked = Arc::clone(&asked);
        tasks.push(tokio::spawn(run_session(
            server.addr,
            jar,
            end,
            plan.pace,
            asked,
        )));
    }
    tokio::time::sleep(settle).await;
    for k in 0..upgrades {
        progress(&format!(
            "upgrade {}/{upgrades} under {sessions} sessions",
            k + 1
        ));
        server.upgrade(&binary, dir).await?;
        tokio::time::sleep(interval).await;
    }
    let (counts, failed) = gather(tasks).await?;
    let seconds = began.elapsed().as_secs_f64();
    server.stop();
    let asked = asked.load(Ordering::Relaxed);
    Ok(summarize(
        &counts, sessions, upgrades, failed, asked, seconds,
    ))
}

/// Each session's counts, and how many sessions failed (the first
/// failure said on standard error).
async fn gather(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<SessionCounts>>>,
) -> anyhow::Result<(Vec<SessionCounts>, usize)> {
    let mut counts = Vec::new();
    let mut failed = 0;
    for task in tasks {
        match task.await? {
            Ok(session) => counts.push(session),
            Err(err) => {
                failed += 1;
                if failed == 1 {
                    eprintln!("echo-bench: a session of the upgrade scenario failed: {err:#}");
                }
            }
        }
    }
    Ok((counts, failed))
}

/// The scenario's figures from each session's counts.
fn summarize(
    counts: &[SessionCounts],
    sessions: usize,
    upgrades: usize,
    failed: usize,
    passwords_asked: u64,
    seconds: f64,
) -> UpgradeResult {
    let sum = |of: fn(&SessionCounts) -> u64| counts.iter().map(of).sum::<u64>();
    let mut gaps: Vec<f64> = counts.iter().map(|c| c.longest_gap_ms).collect();
    gaps.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let last = gaps.len().saturating_sub(1);
        gaps.get(((last as f64) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let (sent, answered) = (sum(|c| c.sent), sum(|c| c.answered));
    UpgradeResult {
        sessions,
        upgrades,
        seconds,
        sent,
        answered,
        lost: sent.saturating_sub(answered),
        doubled: sum(|c| c.doubled),
        refused: sum(|c| c.refused),
        passwords_asked,
        sessions_failed: failed,
        restarts: sum(|c| c.restarts),
        gap_p50_ms: at(0.5),
        gap_p99_ms: at(0.99),
        gap_max_ms: at(1.0),
    }
}
