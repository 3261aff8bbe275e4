//! `echo-server`: parses flags, sets up logging and calls
//! [`echo_server::run`]. See the README for usage.

use std::{
    io::{self, IsTerminal, Write},
    process::ExitCode,
};

use anyhow::Context;
use clap::Parser;
use echo_server::{
    ServerConfig, bind_with_fallback,
    config::{FileConfig, RunArgs},
    daemon,
    logging::LogSetup,
    prompt,
};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Echo server: identifies clients by IP or authenticates users, then
/// echoes their messages. Logs go to LOG_DIR/log_serv.<date>.txt.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match start(&cli.run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("echo-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(args: &RunArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let config = ServerConfig::resolve(args, file, ask_port_on_terminal)?;
    let logs = LogSetup::prepare(&config.log_dir, config.log_keep, &config.log_level)?;
    let bound = bind_with_fallback(&config.host, config.port, config.port_search)?;
    let announcement = bound.announcement();

    // Everything that can fail has been checked while the console is still
    // ours; from here on errors go to the log.
    if config.daemon {
        announce(&announcement)?;
        daemon::detach().context("cannot detach")?;
    }
    let _log_guard = logs.install();
    info!("{announcement}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(serve(&config, bound.listener, &announcement));
    if let Err(err) = &result {
        error!("{err:#}");
    }
    if let Some(path) = &config.pid_file {
        let _ = std::fs::remove_file(path);
    }
    info!("stopped");
    result
}

/// Prints the one line a healthy server prints.
fn announce(line: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")
}

async fn serve(
    config: &ServerConfig,
    listener: std::net::TcpListener,
    announcement: &str,
) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let shutdown = CancellationToken::new();
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        info!(signal = name, "shutdown requested");
        trigger.cancel();
    });
    // Ready: the signals are handled, so whoever reads this may stop us.
    if !config.daemon {
        announce(announcement)?;
    }
    if let Some(path) = &config.pid_file {
        daemon::write_pid_file(path)
            .with_context(|| format!("cannot write pid file {}", path.display()))?;
    }
    if let Err(err) = daemon::notify_ready() {
        warn!(error = %err, "cannot notify systemd");
    }
    echo_server::run(config.clone(), listener, shutdown).await;
    Ok(())
}

/// Asks for the port when standard input is a terminal; otherwise (a
/// daemon, a pipe, CI) never asks.
fn ask_port_on_terminal(default: u16) -> io::Result<Option<u16>> {
    if !io::stdin().is_terminal() {
        return Ok(None);
    }
    let port = prompt::ask(
        &mut io::stdin().lock(),
        &mut io::stderr(),
        "Port",
        &default,
        prompt::parse_port,
    )?;
    Ok(Some(port))
}
