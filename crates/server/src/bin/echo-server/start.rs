//! Serving: the settings, the log, the store, the listening socket, the
//! control socket and the metrics port, then the server until a signal.

use std::{
    io::{self, IsTerminal, Write},
    sync::Arc,
};

use anyhow::Context;
use echo_server::{
    MAX_METRICS_CONNECTIONS, ServeError, Server, ServerConfig, ServerTls, bind_with_fallback,
    config::RunArgs, control, daemon, logging::LogSetup, reload::Reloader, store::Store,
};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::setup::{describe, load_config, open_store, small_runtime};

pub(crate) fn start(args: &RunArgs) -> anyhow::Result<()> {
    // A daemon never asks anything, even when started from a terminal.
    let ask = |default| match args.daemon {
        true => Ok(None),
        false => ask_port_on_terminal(default),
    };
    let mut config = load_config(args, ask)?;
    let (lowered, fit) = fit_connections(&mut config)?;
    let logs = LogSetup::prepare(&config.log.dir, config.log.keep, &config.log.level)?
        .with_format(config.log.format);
    // On a runtime of its own: a daemon forks after this, and a runtime's
    // threads would not survive it. The PostgreSQL store's pool opens its
    // connections later, on the serving runtime. SQLite's connections and
    // writer thread must not cross a fork either: a daemon checks that its
    // store opens, closes it, and opens it again once detached.
    let runtime = small_runtime()?;
    let store = runtime.block_on(open_store(&config))?;
    let imported = store.imported();
    let store = match config.process.daemon {
        true => {
            runtime.block_on(async move { drop(store) });
            drop(runtime);
            None
        }
        false => Some(store),
    };
    let listeners = Listeners::bind(&config)?;
    let announcement = listeners.announcement.clone();

    // Everything that can fail has been checked while the console is still
    // ours; from here on errors go to the log.
    if config.process.daemon {
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
        echo_server::store::log_import(imported);
    }
    log_listening(&config, &announcement, lowered, fit);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // SIGHUP and `echo-server reload` read the file again with these flags.
    let reloader = Reloader::new(args.clone(), config.clone()).with_log_level(log_level);
    let reloader = reloader.with_max_connections_fit(fit);
    let result = runtime.block_on(serve(&config, store, listeners, &announcement, reloader));
    if let Err(err) = &result {
        error!("{}", describe(err));
    }
    if let Some(path) = &config.process.pid_file {
        let _ = std::fs::remove_file(path);
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

/// Prints the one line a healthy server prints.
fn announce(line: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")
}

/// The sockets bound before the runtime starts, and the TLS setup.
struct Listeners {
    main: std::net::TcpListener,
    metrics: Option<std::net::TcpListener>,
    control: control::ControlSocket,
    tls: Option<Arc<ServerTls>>,
    /// The one line a healthy server prints: where it listens (and its
    /// TLS key).
    announcement: String,
}

impl Listeners {
    /// The TLS pair, the port (or the next free one), its control socket
    /// and the metrics port, in that order.
    fn bind(config: &ServerConfig) -> anyhow::Result<Self> {
        let tls = match config.tls.enabled {
            true => Some(Arc::new(
                ServerTls::prepare(config).context("cannot set up TLS")?,
            )),
            false => None,
        };
        let listen = &config.listen;
        let bound = bind_with_fallback(&listen.host, listen.port, listen.port_search)?;
        // Bound now, before the server says it is listening, and named after
        // the port it got; without it `clients` and `kick` could not reach
        // this server, so it is no start.
        let data_dir = &config.store.data_dir;
        let port = bound.addr.port();
        let control = control::bind(data_dir, port).with_context(|| {
            let path = control::socket_path(data_dir, port);
            format!("cannot make the control socket {}", path.display())
        })?;
        let metrics = match &config.metrics.addr {
            Some(addr) => Some(
                std::net::TcpListener::bind(addr)
                    .with_context(|| format!("cannot listen on the metrics address {addr}"))?,
            ),
            None => None,
        };
        let mut announcement = bound.announcement();
        if let Some(tls) = &tls {
            announcement.push_str(&format!(" (TLS key {})", tls.fingerprint()));
        }
        Ok(Self {
            main: bound.listener,
            metrics,
            control,
            tls,
            announcement,
        })
    }
}

/// A bound std listener, handed to the runtime.
fn tokio_listener(listener: std::net::TcpListener) -> io::Result<tokio::net::TcpListener> {
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// Serves until SIGTERM or SIGINT, once the signals are handled and the
/// server has said it is ready.
async fn serve(
    config: &ServerConfig,
    store: Store,
    listeners: Listeners,
    announcement: &str,
    mut reloader: Reloader,
) -> anyhow::Result<()> {
    let listener = tokio_listener(listeners.main)?;
    let ledger = store.shared_ledger();
    let mut server = Server::new(config.clone(), store);
    if let Some(ledger) = ledger {
        // Limits hold across every server on the database.
        server = server.with_ledger(ledger);
    }
    server = server.with_control_socket(listeners.control);
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
    ready(config, announcement)?;
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
/// announcement (a daemon made it before detaching), the pid file, systemd.
fn ready(config: &ServerConfig, announcement: &str) -> anyhow::Result<()> {
    if !config.process.daemon {
        announce(announcement)?;
    }
    if let Some(path) = &config.process.pid_file {
        daemon::write_pid_file(path)
            .with_context(|| format!("cannot write pid file {}", path.display()))?;
    }
    if let Err(err) = daemon::notify_ready() {
        warn!(error = %err, "cannot notify systemd");
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
