//! The scenarios' results, as the report prints them and `--json` writes
//! them.

use serde::Serialize;

use crate::spread::Spread;

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
    /// `auth` or `ident`.
    pub mode: String,
    pub tls: bool,
    /// Client addresses the sessions came from (127.0.0.1..N).
    pub sources: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub peak_rss_kib: u64,
    pub kib_per_connection: f64,
    /// Kernel TCP buffer memory per session, bytes (client and server
    /// ends: both are on this machine).
    pub kernel_tcp_bytes_per_session: f64,
    /// Socket slab bytes per session (both ends); `None` when
    /// `/proc/slabinfo` is not readable (it takes root).
    pub kernel_slab_bytes_per_session: Option<f64>,
    /// Sessions ping-ponging 64 B among the idle ones.
    pub active: usize,
    pub p99_alone_us: f64,
    pub p99_among_idle_us: f64,
    pub p99_ratio: f64,
    /// Idle sessions opened per second over the first and the last tenth
    /// of them (`NaN`, `null` in JSON, with fewer than 20).
    pub open_rates: [f64; 2],
}

/// Scenario 6: sessions carried across upgrades of the real server.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeResult {
    pub sessions: usize,
    pub upgrades: usize,
    /// How long the sessions sent, upgrades included.
    pub seconds: f64,
    /// Lines the sessions sent (each once, however often it went out).
    pub sent: u64,
    /// Lines answered once, with their own text, in order.
    pub answered: u64,
    /// Lines never answered (must be 0).
    pub lost: u64,
    /// Lines answered twice (must be 0).
    pub doubled: u64,
    /// Connections to a new process that failed before one let the
    /// session in (must be 0).
    pub refused: u64,
    /// Times a session was asked for a password or a name (must be 0:
    /// every session resumes with its token).
    pub passwords_asked: u64,
    /// Sessions that ended with an error (must be 0).
    pub sessions_failed: usize,
    /// `bye restart`s the sessions carried on across.
    pub restarts: u64,
    /// The longest gap between two answers each session saw, over the
    /// sessions: median, 99th percentile, largest (milliseconds).
    pub gap_p50_ms: f64,
    pub gap_p99_ms: f64,
    pub gap_max_ms: f64,
}
