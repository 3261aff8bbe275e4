//! Scenario 4: what an idle session costs. Server RSS per authenticated
//! (or identified) idle connection, over plain TCP or TLS; the kernel's
//! socket memory beside it; and what the idle ones cost the active: a
//! hundred sessions ping-ponging among them, their p99 against a hundred
//! alone. Client sockets can be spread over 127.0.0.1..N (`--sources`), so
//! one address's port range is not the limit.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context;
use echo_proto::{ClientMsg, Mode, Secret, ServerMsg, ext::AsyncFrameRead, ext::AsyncFrameWrite};
use futures_util::StreamExt;
use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

use crate::{
    kernel::KernelMemory,
    load::{Conn, Handshake, Load, Target, handshake_on, ping_pong},
    procs::{Proc, ProcStats},
    progress::progress,
    tls::BenchTls,
};

use super::{
    auth::{populate, token_of},
    plan::Plan,
    results::IdleResult,
};

/// Sessions ping-ponging among the idle ones.
pub const ACTIVE: usize = 100;
/// Connections opened at once: plain, and over TLS (each TLS handshake
/// takes the load generator's CPU too, and a server that hears no
/// ClientHello within a second takes the client for a plain one).
const PARALLEL: usize = 200;
/// Time the sessions sit idle before the server's memory is read.
const SETTLE: Duration = Duration::from_secs(5);
const PARALLEL_TLS: usize = 16;

/// How one session of the scenario is opened.
struct Opener {
    addr: SocketAddr,
    mode: Mode,
    sources: usize,
    tls: Option<TlsConnector>,
}

/// Scenario 4: memory per idle session, and the active among the idle.
pub async fn idle(plan: &Plan, dir: &Path) -> anyhow::Result<IdleResult> {
    let n = plan.idle_connections;
    let mode = plan.idle_mode;
    progress(&format!("idle: creating {n} users and sessions"));
    let user = |prefix: &str, i: usize| format!("{prefix}{i}");
    let mut users: Vec<String> = (0..n).map(|i| user("i", i)).collect();
    users.extend((0..ACTIVE).flat_map(|i| [user("a", i), user("b", i)]));
    users.push(user("w", 0));
    populate(dir, &users, true).await?;
    let tls = plan.tls.then(|| BenchTls::generate(dir)).transpose()?;
    let tls_args = tls.as_ref().map(BenchTls::args);
    let tls_args: Vec<&str> = tls_args.iter().flatten().map(String::as_str).collect();
    let mode_arg = match mode {
        Mode::Ident => "ident",
        Mode::Auth => "auth",
    };
    let server = Proc::spawn(
        &[&["serve", "--mode", mode_arg][..], &tls_args].concat(),
        dir,
    )?;
    let opener = Opener {
        addr: server.addr,
        mode,
        sources: plan.sources.max(1),
        tls: tls.as_ref().map(|tls| tls.connector(false)).transpose()?,
    };
    // One connection first, so that the runtime's threads and buffers are
    // counted in the baseline, not against the idle connections.
    let _warm = opener.open(0, "w0").await?;
    progress(&format!("idle: {ACTIVE} sessions ping-ponging alone"));
    let alone = opener.active(plan, "a").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.stats()?;
    let kernel_before = KernelMemory::read();
    progress(&format!("idle: opening {n} idle sessions"));
    let parallel = if plan.tls { PARALLEL_TLS } else { PARALLEL };
    let (streams, open_rates) = opener.open_all(n, parallel).await?;
    // Idle: the server's memory trimmer looks every 2 s, and gives back
    // what a burst of logins left once the burst is over.
    tokio::time::sleep(SETTLE).await;
    let after = server.stats()?;
    let kernel_after = KernelMemory::read();
    progress(&format!(
        "idle: {ACTIVE} sessions ping-ponging among {n} idle"
    ));
    let among = opener.active(plan, "b").await?;
    drop(streams);
    let kernel = (kernel_before, kernel_after);
    let p99 = (alone, among);
    Ok(IdleResult {
        open_rates,
        ..result(n, plan, (before, after), kernel, p99)
    })
}

/// The figures, per session.
fn result(
    n: usize,
    plan: &Plan,
    (before, after): (ProcStats, ProcStats),
    (kernel_before, kernel_after): (KernelMemory, KernelMemory),
    (alone, among): (f64, f64),
) -> IdleResult {
    let per_session = |from: u64, to: u64| to.saturating_sub(from) as f64 / n.max(1) as f64;
    let slabs = kernel_before.socket_slabs.zip(kernel_after.socket_slabs);
    IdleResult {
        connections: n,
        mode: plan.idle_mode.to_string(),
        tls: plan.tls,
        sources: plan.sources.max(1),
        rss_before_kib: before.rss_kib,
        rss_after_kib: after.rss_kib,
        peak_rss_kib: after.peak_rss_kib,
        kib_per_connection: per_session(before.rss_kib, after.rss_kib),
        kernel_tcp_bytes_per_session: per_session(
            kernel_before.tcp_buffers,
            kernel_after.tcp_buffers,
        ),
        kernel_slab_bytes_per_session: slabs.map(|(from, to)| per_session(from, to)),
        active: ACTIVE,
        p99_alone_us: alone,
        p99_among_idle_us: among,
        p99_ratio: among / alone,
        open_rates: [f64::NAN; 2],
    }
}

impl Opener {
    /// Opens `n` idle sessions (users `i0`..), `parallel` at a time; with
    /// the sessions opened per second over the first and the last tenth
    /// of them: a server whose per-connection work grew with the count
    /// (its registries, its timers, its accept loop) would open the last
    /// ones more slowly.
    async fn open_all(&self, n: usize, parallel: usize) -> anyhow::Result<(Vec<Conn>, [f64; 2])> {
        let started = Instant::now();
        let mut opened = futures_util::stream::iter(
            (0..n).map(|i| async move { self.open(i, &format!("i{i}")).await }),
        )
        .buffer_unordered(parallel);
        let mut streams = Vec::with_capacity(n);
        let mut at = Vec::with_capacity(n);
        while let Some(stream) = opened.next().await {
            streams.push(stream.with_context(|| format!("idle session {} of {n}", streams.len()))?);
            at.push(started.elapsed().as_secs_f64());
        }
        Ok((streams, open_rates(&at)))
    }

    /// Opens session `i` as `user`, from source address 127.0.0.(1 + i
    /// mod sources), through its handshake: a resume in authentication
    /// mode, a name if asked in identification mode.
    async fn open(&self, i: usize, user: &str) -> anyhow::Result<Conn> {
        let source = Ipv4Addr::new(127, 0, 0, 1 + (i % self.sources) as u8);
        let socket = TcpSocket::new_v4()?;
        // The port is chosen at connect, for the (source, server) pair,
        // not at bind for the source alone: a bind-time choice takes only
        // ports free on every pair, and ports a previous run left in
        // TIME_WAIT count as taken.
        setsockopt(&socket, IpBindAddressNoPort, &true)?;
        socket.bind(SocketAddr::from((source, 0)))?;
        let tcp = socket.connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let mut stream: Conn = match &self.tls {
            Some(connector) => {
                let name = echo_tls::pki_types::ServerName::IpAddress(self.addr.ip().into());
                Box::new(connector.connect(name, tcp).await?)
            }
            None => Box::new(tcp),
        };
        match self.mode {
            Mode::Ident => handshake_on(&mut stream, &Handshake::Ident).await?,
            Mode::Auth => resume(&mut stream, user).await?,
        }
        Ok(stream)
    }

    /// The p99 (µs) of [`ACTIVE`] sessions (users `prefix`0..) ping-ponging
    /// 64 bytes for the plan's duration.
    async fn active(&self, plan: &Plan, prefix: &str) -> anyhow::Result<f64> {
        let mut streams = Vec::with_capacity(ACTIVE);
        for i in 0..ACTIVE {
            streams.push(self.open(i, &format!("{prefix}{i}")).await?);
        }
        let load = Load {
            connections: ACTIVE,
            payload: 64,
            depth: 1,
            warmup: plan.warmup,
            duration: plan.duration,
            interval: None,
        };
        let measured = ping_pong(streams, Target::Real, load).await?;
        Ok(measured.quantile_us(0.99))
    }
}

/// Sessions opened per second over the first and the last tenth, from
/// the moments (seconds from the start) each was opened.
fn open_rates(at: &[f64]) -> [f64; 2] {
    let tenth = at.len() / 10;
    if tenth < 2 {
        return [f64::NAN; 2];
    }
    let rate = |from: f64, to: f64| (tenth - 1) as f64 / (to - from);
    let last = at.len() - tenth;
    [rate(at[0], at[tenth - 1]), rate(at[last], at[at.len() - 1])]
}

/// Resumes `user`'s pre-made session on a fresh connection.
async fn resume(stream: &mut Conn, user: &str) -> anyhow::Result<()> {
    let token = Secret::new(token_of(user));
    stream.send_msg(&ClientMsg::Resume { token }).await?;
    loop {
        match stream
            .recv_msg::<ServerMsg>()
            .await?
            .context("server closed")?
        {
            ServerMsg::Welcome { .. } => return Ok(()),
            ServerMsg::Hello { .. } | ServerMsg::AskAuth { .. } => {}
            other => anyhow::bail!("resume refused: {other:?}"),
        }
    }
}
