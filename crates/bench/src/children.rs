//! What the child processes run: the real server (the echo-server library,
//! with the same logging and store as the binary) and the reference echo.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context;
use echo_proto::Mode;
use echo_server::{Server, ServerConfig, ServerTls, config::StoreChoice, logging::LogSetup, store};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

/// Settings of the real server under test: the defaults, with limits
/// raised so that the benchmark measures speed, not refusals.
pub fn server_config(mode: Mode, dir: &Path) -> ServerConfig {
    let mut config = ServerConfig {
        mode,
        ..ServerConfig::default()
    };
    config.store.data_dir = dir.join("data");
    config.log.dir = dir.join("logs");
    config.limits.max_connections = 50_000;
    // Every load connection comes from 127.0.0.1.
    config.limits.max_connections_per_ip = 50_000;
    config.limits.max_handshakes_per_ip = 50_000;
    config.auth.attempts_per_minute = 100_000_000;
    config.timeouts.handshake = std::time::Duration::from_secs(120);
    config
}

/// Runs the real server until standard input closes; with `metrics`, its
/// metrics port is on and scraped once a second, as Prometheus would.
pub fn serve(
    mode: Mode,
    dir: &Path,
    metrics: bool,
    tls: Option<(PathBuf, PathBuf)>,
    store: Option<&str>,
) -> anyhow::Result<()> {
    let mut config = server_config(mode, dir);
    if let Some(store) = store {
        let choice = echo_server::config::parse_store(store, std::env::var("PGPASSWORD").ok())
            .map_err(anyhow::Error::msg)?;
        match choice {
            StoreChoice::Sqlite(path) => config.store.sqlite = path,
            StoreChoice::Postgres(url) => config.store.url = Some(*url),
        }
    }
    config.tls.enabled = tls.is_some();
    config.tls.files = tls;
    let tls = match config.tls.enabled {
        true => Some(Arc::new(ServerTls::prepare(&config)?)),
        false => None,
    };
    let logs = LogSetup::prepare(&config.log.dir, config.log.keep, &config.log.level)?;
    let _guard = logs.install();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let store = store::open(&config.store_location(), config.lifetimes()).await?;
        let ledger = store.shared_ledger();
        // Bound as the binary binds (its listen backlog of 1,024, not
        // std's 128, which a burst of the idle scenario's connections
        // overflows: each SYN dropped costs its client a second).
        let bound = echo_server::bind_with_fallback("127.0.0.1", 0, 0)?;
        bound.listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(bound.listener)?;
        announce(&listener)?;
        let shutdown = stop_on_stdin_close();
        let mut server = Server::new(config, store);
        if let Some(ledger) = ledger {
            server = server.with_ledger(ledger);
        }
        if let Some(tls) = tls {
            server = server.with_tls(tls);
        }
        if metrics {
            let http = TcpListener::bind("127.0.0.1:0").await?;
            tokio::spawn(scrape_every_second(http.local_addr()?, shutdown.clone()));
            server = server.with_metrics_listener(http);
        }
        server
            .serve(listener, shutdown)
            .await
            .context("server failed")
    })
}

/// Runs the plainest Tokio echo: read into a buffer, write it back; no
/// framing, no JSON, no state. With `tls`, over TLS (tokio-rustls, the same
/// provider as the server's).
pub fn reference(tls: Option<(PathBuf, PathBuf)>) -> anyhow::Result<()> {
    let acceptor = match &tls {
        Some((cert, key)) => Some(crate::tls::acceptor(cert, key)?),
        None => None,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        announce(&listener)?;
        let shutdown = stop_on_stdin_close();
        loop {
            let (stream, _) = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                accepted = listener.accept() => accepted?,
            };
            let _ = stream.set_nodelay(true);
            match acceptor.clone() {
                Some(acceptor) => {
                    tokio::spawn(async move {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            echo(stream).await;
                        }
                    });
                }
                None => {
                    tokio::spawn(echo(stream));
                }
            }
        }
    })
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Fetches `/metrics` from `addr` once a second until `shutdown`.
async fn scrape_every_second(addr: std::net::SocketAddr, shutdown: CancellationToken) {
    let request = b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        if let Ok(mut stream) = TcpStream::connect(addr).await
            && stream.write_all(request).await.is_ok()
        {
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink).await;
        }
    }
}

fn announce(listener: &TcpListener) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    writeln!(out, "listening on {}", listener.local_addr()?)?;
    out.flush()?;
    Ok(())
}

/// The parent stops a child by closing its standard input.
fn stop_on_stdin_close() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        trigger.cancel();
    });
    token
}
