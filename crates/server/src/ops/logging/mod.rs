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
use tracing_subscriber::{EnvFilter, fmt};

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
        let (writer, guard) = tracing_appender::non_blocking(self.appender);
        let builder = fmt()
            .with_env_filter(self.filter)
            .with_writer(writer)
            .with_ansi(false)
            .with_target(false);
        match self.format {
            LogFormat::Text => builder.init(),
            LogFormat::Json => builder.json().init(),
        }
        guard
    }
}
