//! What every scenario is given: the plan (`--quick` or the command line's
//! knobs) and the benchmark users' password.

use std::{net::SocketAddr, time::Duration};

use echo_proto::Mode;

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
    /// How the idle scenario's sessions are opened (`--idle-mode`).
    pub idle_mode: Mode,
    /// Client addresses the idle scenario spreads its sockets over.
    pub sources: usize,
}
