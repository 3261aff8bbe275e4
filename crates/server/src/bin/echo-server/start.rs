//! Serving: the settings, the log, the store, the listening socket, the
//! control socket and the metrics port, then the server until a signal.

use std::{
    io::{self, IsTerminal, Write},
    path::PathBuf,
    sync::Arc,
};

use anyhow::Context;
use echo_server::{
    MAX_METRICS_CONNECTIONS, ServeError, Server, ServerConfig, ServerTls,
    config::RunArgs,
    daemon,
    logging::LogSetup,
    reload::Reloader,
    store::{self, Store},
    upgrade::{Handoff, Readiness},
};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    listeners::{Listeners, tokio_listener},
    setup::{describe, load_config, open_store, small_runtime},
};

/// Serves; a process started by `echo-server upgrade` takes the sockets
/// handed to it first, and tells the old process why it failed, if it does.
pub(crate) fn start(args: &RunArgs) -> anyhow::Result<()> {
    let (handoff, mut readiness) = match Handoff::from_env()
        .context("cannot take the sockets handed over by the previous process")?
    {
        Some((handoff, readiness)) => (Some(handoff), Some(readiness)),
        None => (None, None),
    };
    let result = start_with(args, handoff, &mut readiness);
    if let (Err(err), Some(readiness)) = (&result, readiness) {
        readiness.failed(&describe(err));
    }
    result
}

fn start_with(
    args: &RunArgs,
    handoff: Option<Handoff>,
    readiness: &mut Option<Readiness>,
) -> anyhow::Result<()> {
    // A new process of an upgrade is detached already if the old one was.
    let detach = args.daemon && handoff.is_none();
    // A daemon never asks anything, even when started from a terminal; nor
    // does an upgrade (the port is handed over).
    let ask = |default| {
        if args.daemon || handoff.is_some() {
            Ok(None)
        } else {
            ask_port_on_terminal(default)
        }
    };
    let mut config = load_config(args, ask)?;
    let (lowered, fit) = fit_connections(&mut config)?;
    let logs = LogSetup::prepare(&config.log.dir, config.log.keep, &config.log.level)?
        .with_format(config.log.format);
    let (store, imported) = open_before_detaching(&config, detach)?;
    let listeners = Listeners::bind(&config, handoff)?;
    let announcement = listeners.announcement.clone();

    // Everything that can fail has been checked while the console is still
    // ours; from here on errors go to the log.
    if detach {
        announce(&announcement)?;
        daemon::detach().context("cannot detach")?;
    }
    let (_log_guard, log_level) = logs.install_reloadable();
    let store = match store {
        Some(store) => store,
        None => small_runtime()?.block_on(open_store(&config))?,
    };
    log_start(&config, args, listeners.tls.as_deref());
    if let Some(imported) = &imported {
        store::log_import(imported);
    }
    log_listening(&config, &announcement, lowered, fit);
    // SIGHUP and `echo-server reload` read the file again with these flags.
    let reloader = Reloader::new(args.clone(), config.clone()).with_log_level(log_level);
    let reloader = reloader.with_max_connections_fit(fit);
    serve_until_stopped(
        &config,
        store,
        (listeners, reloader),
        &announcement,
        readiness,
    )
}

/// What a start imported from a journal, and where the journal went.
type JournalImport = (store::sqlite::Imported, PathBuf);

/// Opens the store, to check that it opens while errors still reach the
/// console: on a runtime of its own, since a daemon forks after this and a
/// runtime's threads would not survive it. The PostgreSQL store's pool opens
/// its connections later, on the serving runtime. SQLite's connections and
/// writer thread must not cross a fork either: a process about to detach
/// closes the store again (none), to open it once detached. What was
/// imported from a journal, if anything.
fn open_before_detaching(
    config: &ServerConfig,
    detach: bool,
) -> anyhow::Result<(Option<Store>, Option<JournalImport>)> {
    let runtime = small_runtime()?;
    let store = runtime.block_on(open_store(config))?;
    let imported = store.imported();
    if detach {
        runtime.block_on(async move { drop(store) });
        return Ok((None, imported));
    }
    Ok((Some(store), imported))
}

/// Serves on a runtime of its own until a signal (or a handover), then
/// logs why it stopped and removes the pid file if it is still ours.
fn serve_until_stopped(
    config: &ServerConfig,
    store: Store,
    (listeners, reloader): (Listeners, Reloader),
    announcement: &str,
    readiness: &mut Option<Readiness>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(serve(
        config,
        store,
        listeners,
        announcement,
        readiness,
        reloader,
    ));
    if let Err(err) = &result {
        error!("{}", describe(err));
    }
    if let Some(path) = &config.process.pid_file {
        remove_pid_file_if_ours(path);
    }
    info!("stopped");
    result
}

/// The log lines after the first: where the server listens, and the
/// settings that serve less safely, or fewer clients, than asked.
fn log_listening(config: &ServerConfig, announcement: &str, lowered: Option<usize>, fit: usize) {
    if !config.tls.enabled && config.auth.allow_plaintext_auth {
        warn!(
            "allow_plaintext_auth is on: passwords and tokens from other machines cross the network in the clear; start with --tls instead"
        );
    }
    info!("{announcement}");
    if let Some(asked) = lowered {
        warn!(
            max_connections = asked,
            serving = fit,
            "the open-file limit cannot hold max_connections: serving at most {fit} clients at once; raise the limit (ulimit -n, LimitNOFILE=) to serve more"
        );
    }
}

/// Every connection is a file descriptor: if the limit cannot hold
/// `max_connections` (and the metrics port's, and some to spare), serve
/// fewer, so that one more client is told `server_busy` instead of hanging
/// in the backlog. The number asked for if it was lowered, and what fits.
fn fit_connections(config: &mut ServerConfig) -> anyhow::Result<(Option<usize>, usize)> {
    let fit = daemon::connections_that_fit().context("cannot read the open-file limit")?;
    let fit = match config.metrics.addr {
        Some(_) => fit.saturating_sub(MAX_METRICS_CONNECTIONS).max(1),
        None => fit,
    };
    let lowered = (config.limits.max_connections > fit).then(|| {
        let asked = config.limits.max_connections;
        config.limits.max_connections = fit;
        asked
    });
    Ok((lowered, fit))
}

/// The first log line: what runs, and where its files are.
fn log_start(config: &ServerConfig, args: &RunArgs, tls: Option<&ServerTls>) {
    let absolute = |path: &std::path::Path| {
        std::path::absolute(path)
            .map_or_else(|_| path.display().to_string(), |p| p.display().to_string())
    };
    let config_file = args.config.as_deref().map(absolute);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        pid = std::process::id(),
        mode = %config.mode,
        store = %config.store_location(),
        data_dir = %absolute(&config.store.data_dir),
        log_dir = %absolute(&config.log.dir),
        config_file = config_file.as_deref().unwrap_or("none"),
        tls = tls.map_or_else(|| "off".to_owned(), |tls| tls.fingerprint().to_string()),
        "echo-server starting"
    );
}

/// Removes the pid file at exit, unless the process that took over after
/// an upgrade has written its own pid there.
fn remove_pid_file_if_ours(path: &std::path::Path) {
    let ours = format!("{}", std::process::id());
    let holds_ours = std::fs::read_to_string(path).is_ok_and(|pid| pid.trim() == ours);
    if holds_ours {
        let _ = std::fs::remove_file(path);
    }
}

/// Prints the one line a healthy server prints.
fn announce(line: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")
}

/// Serves until SIGTERM or SIGINT, once the signals are handled and the
/// server has said it is ready.
async fn serve(
    config: &ServerConfig,
    store: Store,
    listeners: Listeners,
    announcement: &str,
    readiness: &mut Option<Readiness>,
    mut reloader: Reloader,
) -> anyhow::Result<()> {
    let listener = tokio_listener(listeners.main)?;
    let ledger = store.shared_ledger();
    let mut server = Server::new(config.clone(), store);
    if let Some(ledger) = ledger {
        // Limits hold across every server on the database.
        server = server.with_ledger(ledger);
    }
    let mut control = listeners.control;
    if readiness.is_some() {
        control
            .take_over()
            .context("cannot move the control socket into place")?;
    }
    let port = control.port();
    server = server.with_control_socket(control);
    if let Some(metrics) = listeners.metrics {
        server = server.with_metrics_listener(tokio_listener(metrics)?);
    }
    if let Some(tls) = listeners.tls {
        server = server.with_tls(Arc::clone(&tls));
        reloader = reloader.with_tls(tls);
    }
    let reloader = Arc::new(reloader);
    server = server.with_reloader(Arc::clone(&reloader));
    reload_on_hangup(reloader)?;
    let shutdown = watch_signals()?;
    let (upgrades, handover) =
        crate::upgrade::serve_upgrades(listeners.successor, port, shutdown.clone())?;
    server = server.with_upgrades(upgrades, handover);
    ready(config, announcement, readiness.take())?;
    let served: Result<(), ServeError> = server.serve(listener, shutdown).await;
    Ok(served?)
}

/// Reads the config file (and the TLS pair) again on every SIGHUP, as
/// `echo-server reload` does; the reloader logs what changed, or why
/// nothing did.
fn reload_on_hangup(reloader: Arc<Reloader>) -> anyhow::Result<()> {
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let reloader = Arc::clone(&reloader);
            // A file read and a PEM parse: off the async workers.
            let _ = tokio::task::spawn_blocking(move || reloader.reload("SIGHUP")).await;
        }
    });
    Ok(())
}

/// A token cancelled at the first SIGTERM or SIGINT; SIGXFSZ logged.
fn watch_signals() -> anyhow::Result<CancellationToken> {
    let shutdown = CancellationToken::new();
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    // A file-size limit (RLIMIT_FSIZE) would otherwise kill the process at the
    // first write past it; handled, the write fails with EFBIG, the store
    // refuses that change and the server goes on.
    let mut file_too_large =
        signal(SignalKind::from_raw(nix::libc::SIGXFSZ)).context("cannot watch SIGXFSZ")?;
    tokio::spawn(async move {
        while file_too_large.recv().await.is_some() {
            warn!("a write went past the file-size limit (SIGXFSZ)");
        }
    });
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        info!(signal = name, "shutdown requested");
        trigger.cancel();
    });
    Ok(shutdown)
}

/// Ready: the signals are handled, so whoever reads this may stop us. The
/// announcement (a daemon made it before detaching; the old process of an
/// upgrade made it for both), the pid file, systemd (told the main process
/// is this one, after an upgrade), and the old process of an upgrade.
fn ready(
    config: &ServerConfig,
    announcement: &str,
    readiness: Option<Readiness>,
) -> anyhow::Result<()> {
    if !config.process.daemon && readiness.is_none() {
        announce(announcement)?;
    }
    if let Some(path) = &config.process.pid_file {
        daemon::write_pid_file(path)
            .with_context(|| format!("cannot write pid file {}", path.display()))?;
    }
    let state = match readiness {
        Some(_) => format!("MAINPID={}\nREADY=1", std::process::id()),
        None => "READY=1".to_owned(),
    };
    if let Err(err) = daemon::notify(&state) {
        warn!(error = %err, "cannot notify systemd");
    }
    if let Some(readiness) = readiness {
        // The old process may be gone (killed): this one serves anyway.
        match readiness.ready() {
            Ok(()) => info!("took the port over from the previous process"),
            Err(err) => {
                warn!(error = %err, "cannot tell the previous process that this one is ready; serving anyway")
            }
        }
    }
    Ok(())
}

/// Asks for the port when standard input is a terminal; otherwise (a
/// daemon, a pipe, CI) never asks.
fn ask_port_on_terminal(default: u16) -> io::Result<Option<u16>> {
    if !io::stdin().is_terminal() {
        return Ok(None);
    }
    let port = echo_prompt::ask(
        &mut io::stdin().lock(),
        &mut io::stderr(),
        "Port",
        &default,
        echo_prompt::parse_listen_port,
    )?;
    Ok(Some(port))
}
