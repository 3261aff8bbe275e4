//! Service messages go to rotating log files, never to the console (lab
//! task 3): `LOG_DIR/log_serv.YYYY-MM-DD.txt`, one file a day, the newest
//! `log_keep` kept, written by a background thread so a slow disk never
//! stalls a client.

use std::path::Path;

use tracing_appender::{
    non_blocking::WorkerGuard,
    rolling::{RollingFileAppender, Rotation},
};
use tracing_subscriber::{EnvFilter, fmt};

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
    appender: RollingFileAppender,
    filter: EnvFilter,
}

impl LogSetup {
    /// Opens today's log file in `dir` (created if missing) and parses the
    /// level filter: `RUST_LOG` when set, else `level`.
    pub fn prepare(dir: &Path, keep: usize, level: &str) -> Result<Self, LoggingError> {
        let dir_error = |message: String| LoggingError::Dir {
            dir: dir.display().to_string(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|err| dir_error(err.to_string()))?;
        let appender = RollingFileAppender::builder()
            .rotation(Rotation::DAILY)
            .filename_prefix(LOG_PREFIX)
            .filename_suffix(LOG_SUFFIX)
            .max_log_files(keep)
            .build(dir)
            .map_err(|err| dir_error(err.to_string()))?;
        let filter = match std::env::var("RUST_LOG") {
            Ok(env) if !env.is_empty() => {
                EnvFilter::try_new(&env).map_err(|_| LoggingError::Filter(env))?
            }
            _ => EnvFilter::try_new(level).map_err(|_| LoggingError::Filter(level.to_owned()))?,
        };
        Ok(Self { appender, filter })
    }

    /// Installs the global subscriber. Keep the returned guard until exit:
    /// dropping it flushes what is still queued, so nothing is lost.
    pub fn install(self) -> WorkerGuard {
        let (writer, guard) = tracing_appender::non_blocking(self.appender);
        fmt()
            .with_env_filter(self.filter)
            .with_writer(writer)
            .with_ansi(false)
            .with_target(false)
            .init();
        guard
    }
}
