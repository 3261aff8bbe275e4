//! Service messages go to rotating log files, never to the console (lab
//! task 3): `LOG_DIR/log_serv.YYYY-MM-DD.txt`, one file a day, the newest
//! `log_keep` kept, and `LOG_DIR/log_serv.txt` always leading to the
//! current one (`daily.rs`); written by tracing-appender's background
//! thread so a slow disk never stalls a client. Lines are text or, with
//! `log_format = "json"`, one JSON object each. Client strings in them go
//! through [`shown`] (`shown.rs`).

mod daily;
mod shown;

use std::{path::Path, sync::Arc};

use serde::Deserialize;

pub use daily::{CURRENT_LOG, DailyFile};
pub use shown::{MAX_LOGGED_ERROR, MAX_LOGGED_NAME, Shown, shown, shown_max};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{
    EnvFilter, Registry, fmt, layer::SubscriberExt as _, reload, util::SubscriberInitExt as _,
};

use crate::sys::clock::{Clock, SystemClock};

/// File name prefix of the log files.
pub const LOG_PREFIX: &str = "log_serv";
/// File name suffix of the log files.
pub const LOG_SUFFIX: &str = "txt";

/// Logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The log directory could not be created or a file opened in it.
    #[error("cannot write logs in {dir}: {message}")]
    Dir {
        /// The directory.
        dir: String,
        /// Why.
        message: String,
    },
    /// The level filter (config `log_level` or `RUST_LOG`) is invalid.
    #[error("invalid log level {0:?}")]
    Filter(String),
}

/// Log files opened and the filter parsed, but nothing installed yet: this
/// part can fail and runs before the process detaches, so its errors still
/// reach the console; [`LogSetup::install`] starts the writer thread after.
#[derive(Debug)]
pub struct LogSetup {
    appender: DailyFile,
    filter: EnvFilter,
    format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-11-21T10:00:00.000000Z  INFO conn{id=… peer=…}: message key=value`.
    #[default]
    Text,
    /// One JSON object a line, with the same fields, for log shippers.
    Json,
}

impl LogSetup {
    /// Opens today's log file in `dir` (created if missing) and parses the
    /// level filter: `RUST_LOG` when set, else `level`.
    pub fn prepare(dir: &Path, keep: usize, level: &str) -> Result<Self, LoggingError> {
        Self::prepare_with_clock(dir, keep, level, Arc::new(SystemClock))
    }

    /// [`LogSetup::prepare`], with `clock` deciding when a day is over.
    pub fn prepare_with_clock(
        dir: &Path,
        keep: usize,
        level: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, LoggingError> {
        let dir_error = |message: String| LoggingError::Dir {
            dir: dir.display().to_string(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|err| dir_error(err.to_string()))?;
        let appender =
            DailyFile::open(dir, keep, clock).map_err(|err| dir_error(err.to_string()))?;
        let filter = match std::env::var("RUST_LOG") {
            Ok(env) if !env.is_empty() => {
                EnvFilter::try_new(&env).map_err(|_| LoggingError::Filter(env))?
            }
            _ => EnvFilter::try_new(level).map_err(|_| LoggingError::Filter(level.to_owned()))?,
        };
        Ok(Self {
            appender,
            filter,
            format: LogFormat::Text,
        })
    }

    /// Writes lines in `format`.
    pub fn with_format(mut self, format: LogFormat) -> Self {
        self.format = format;
        self
    }

    /// Installs the global subscriber. Keep the returned guard until exit:
    /// dropping it flushes what is still queued, so nothing is lost.
    pub fn install(self) -> WorkerGuard {
        self.install_reloadable().0
    }

    /// [`LogSetup::install`], and the handle that changes the level while
    /// the process runs (a reload).
    pub fn install_reloadable(self) -> (WorkerGuard, LogLevel) {
        let (writer, guard) = tracing_appender::non_blocking(self.appender);
        let (filter, handle) = reload::Layer::new(self.filter);
        let lines = fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .with_target(false);
        let registry = tracing_subscriber::registry().with(filter);
        match self.format {
            LogFormat::Text => registry.with(lines).init(),
            LogFormat::Json => registry.with(lines.json()).init(),
        }
        let from_env = std::env::var("RUST_LOG").is_ok_and(|env| !env.is_empty());
        (guard, LogLevel { handle, from_env })
    }
}

/// The level filter of the installed subscriber, changed by a reload.
#[derive(Debug, Clone)]
pub struct LogLevel {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` chose the filter at start, and goes on choosing it.
    from_env: bool,
}

impl LogLevel {
    /// Whether `RUST_LOG` set the filter (then `log_level` is not used).
    pub fn from_env(&self) -> bool {
        self.from_env
    }

    /// Checks `level` without using it: a reload refuses a bad one before
    /// it changes anything.
    pub fn parse(level: &str) -> Result<EnvFilter, LoggingError> {
        EnvFilter::try_new(level).map_err(|_| LoggingError::Filter(level.to_owned()))
    }

    /// Puts `filter` in force for the lines logged from now on.
    pub fn set(&self, filter: EnvFilter) -> Result<(), LoggingError> {
        self.handle
            .reload(filter)
            .map_err(|err| LoggingError::Filter(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_checks_a_level_before_using_it() {
        assert!(LogLevel::parse("debug").is_ok());
        assert!(LogLevel::parse("info,echo_server=trace").is_ok());
        let refused = LogLevel::parse("info,echo_server=loud").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "invalid log level \"info,echo_server=loud\""
        );
    }
}
