//! A reload (`SIGHUP`, `echo-server reload`): the config file read again
//! and put in force without dropping anyone. Everything is checked first
//! (the file, each value's range, the log level, the TLS pair); a file with
//! an error is refused whole and nothing changes. Then the TLS pair, the
//! log level and the settings snapshot are replaced. Established sessions
//! keep their connection; each limit is read from the snapshot where it
//! applies, so new connections, and every connection's next message, obey
//! the new values.

use std::{fmt, sync::Arc, sync::Mutex};

use echo_tls::{Fingerprint, TlsError};
use tracing::{error, info, warn};

use crate::{
    config::{
        ConfigError, RunArgs, ServerConfig, Settings,
        reload::{Change, Plan, plan, reread},
    },
    conn::certs::ServerTls,
    ops::logging::{LogLevel, LoggingError},
    sys::sync::lock,
};

/// Re-reads and applies the settings of one running server.
pub struct Reloader {
    /// The flags (and environment) the server started with: they still win
    /// over the file.
    args: RunArgs,
    settings: Settings,
    tls: Option<Arc<ServerTls>>,
    log: Option<LogLevel>,
    /// What the open-file limit holds: `max_connections` is lowered to it,
    /// as at start.
    max_connections_fit: Option<usize>,
    /// One reload at a time (SIGHUP and the command may cross).
    one_at_a_time: Mutex<()>,
}

/// A reload that was refused: nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file cannot be read or parsed, or a value is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The new `log_level` is not a filter.
    #[error(transparent)]
    LogLevel(#[from] LoggingError),
    /// The certificate and key cannot be used.
    #[error("TLS certificate not reloaded: {0}")]
    Tls(#[from] TlsError),
}

/// What a reload did: the answer of `echo-server reload`, and the log.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The settings that changed.
    pub applied: Vec<Change>,
    /// The settings that need a restart: left as they are.
    pub left: Vec<Change>,
    /// The TLS key before and after (the pair is read again each time).
    pub tls_key: Option<(Fingerprint, Fingerprint)>,
}

impl Reloader {
    /// A reloader for a server started with `args`, serving `config`. The
    /// config file is named by its absolute path: it is the same file
    /// whatever the working directory becomes.
    pub fn new(mut args: RunArgs, config: ServerConfig) -> Self {
        if let Some(path) = &mut args.config
            && let Ok(absolute) = std::path::absolute(&*path)
        {
            *path = absolute;
        }
        Self {
            args,
            settings: Settings::new(config),
            tls: None,
            log: None,
            max_connections_fit: None,
            one_at_a_time: Mutex::new(()),
        }
    }

    /// Reads the TLS pair again at each reload, into `tls`.
    pub fn with_tls(mut self, tls: Arc<ServerTls>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Changes the level of the installed log subscriber.
    pub fn with_log_level(mut self, log: LogLevel) -> Self {
        self.log = Some(log);
        self
    }

    /// Lowers `max_connections` to `fit` (what the open-file limit holds).
    pub fn with_max_connections_fit(mut self, fit: usize) -> Self {
        self.max_connections_fit = Some(fit);
        self
    }

    /// The settings in force, which the server reads and this replaces.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Re-reads the config file and applies it, or refuses it whole; logs
    /// the outcome, saying what asked (`via`: `SIGHUP`, `control`).
    pub fn reload(&self, via: &'static str) -> Result<Reloaded, ReloadError> {
        let done = self.reload_quietly();
        match &done {
            Ok(reloaded) => log_reloaded(via, reloaded),
            Err(err) => error!(via, error = %err, "reload refused; nothing changed"),
        }
        done
    }

    fn reload_quietly(&self) -> Result<Reloaded, ReloadError> {
        let _one = lock(&self.one_at_a_time);
        let current = self.settings.now();
        let mut fresh = reread(&self.args, &current)?;
        if let Some(fit) = self.max_connections_fit {
            fresh.limits.max_connections = fresh.limits.max_connections.min(fit);
        }
        let mut plan = plan(&current, &fresh);
        drop(current);
        let filter = self.log_filter(&mut plan)?;
        let pair = match &self.tls {
            Some(_) => Some(ServerTls::load(&plan.next)?),
            None => None,
        };
        // Checked: from here on nothing fails.
        if let (Some(log), Some(filter)) = (&self.log, filter)
            && let Err(err) = log.set(filter)
        {
            warn!(error = %err, "log level not changed");
        }
        let tls_key = self
            .tls
            .as_ref()
            .zip(pair)
            .map(|(tls, pair)| tls.install(pair));
        self.settings.replace(plan.next);
        Ok(Reloaded {
            applied: plan.applied,
            left: plan.left,
            tls_key,
        })
    }

    /// The new log filter, checked, when `log_level` changed. `RUST_LOG`
    /// chose the filter at start and goes on choosing it: then the change
    /// is named as left.
    fn log_filter(
        &self,
        plan: &mut Plan,
    ) -> Result<Option<tracing_subscriber::EnvFilter>, LoggingError> {
        let Some(at) = plan.applied.iter().position(|c| c.name == "log_level") else {
            return Ok(None);
        };
        let filter = LogLevel::parse(&plan.next.log.level)?;
        match &self.log {
            Some(log) if log.from_env() => {
                let mut change = plan.applied.remove(at);
                change.new.push_str(" (RUST_LOG is set, and wins)");
                plan.left.push(change);
                Ok(None)
            }
            _ => Ok(Some(filter)),
        }
    }
}

impl fmt::Debug for Reloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloader")
            .field("config_file", &self.args.config)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Reloaded {
    /// One line a change: what changed, then what needs a restart.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.applied.is_empty() {
            writeln!(f, "reloaded: no setting changed")?;
        } else {
            writeln!(f, "reloaded:")?;
        }
        for change in &self.applied {
            writeln!(f, "  {change}")?;
        }
        match &self.tls_key {
            Some((old, new)) if old != new => writeln!(f, "  TLS key: {old} -> {new}")?,
            Some((_, key)) => writeln!(f, "  TLS certificate read again (key {key})")?,
            None => {}
        }
        if !self.left.is_empty() {
            writeln!(f, "needs a restart, left as it is:")?;
        }
        for change in &self.left {
            writeln!(f, "  {change}")?;
        }
        Ok(())
    }
}

/// The log lines of a reload: one for what changed, one for what was left.
fn log_reloaded(via: &'static str, reloaded: &Reloaded) {
    let list = |changes: &[Change]| {
        let shown: Vec<String> = changes.iter().map(Change::to_string).collect();
        shown.join("; ")
    };
    info!(via, changed = %list(&reloaded.applied), "settings reloaded");
    if let Some((_, key)) = &reloaded.tls_key {
        info!(via, %key, "TLS certificate reloaded");
    }
    if !reloaded.left.is_empty() {
        warn!(
            via,
            left = %list(&reloaded.left),
            "settings that need a restart were left as they are"
        );
    }
}
