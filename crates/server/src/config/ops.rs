//! The operator's side: the log files ([`Logging`]), the metrics port
//! ([`MetricsPort`]), detaching and the pid file ([`Process`]).

use std::{path::PathBuf, time::Duration};

use super::{ConfigError, FileConfig, RunArgs, at_least_1, pick, secs};
use crate::ops::logging::LogFormat;

/// The rotating log files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    /// Directory of the rotating log files (`log_dir`).
    pub dir: PathBuf,
    /// How many daily log files to keep (`log_keep`).
    pub keep: usize,
    /// Default log filter when `RUST_LOG` is not set (`info`, `debug`, ...;
    /// `log_level`).
    pub level: String,
    /// Text lines or JSON objects (`log_format`).
    pub format: LogFormat,
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("logs"),
            keep: 14,
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

impl Logging {
    /// From the flags, else the file, else the defaults.
    pub(super) fn resolve(args: &RunArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            dir: pick(args.log_dir.clone(), file.log_dir.clone(), d.dir),
            keep: at_least_1("log_keep", file.log_keep.unwrap_or(d.keep))?,
            level: file.log_level.clone().unwrap_or(d.level),
            format: pick(args.log_format, file.log_format, d.format),
        })
    }
}

/// The HTTP port that serves `/metrics` and `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsPort {
    /// Where to serve them (HOST:PORT), if anywhere (`metrics_addr`).
    pub addr: Option<String>,
    /// Time a metrics-port connection has to send each request head (idle
    /// keep-alive connections are closed after it); each request has it
    /// plus 5 s to be answered (`metrics_idle_timeout`).
    pub idle_timeout: Duration,
}

impl Default for MetricsPort {
    fn default() -> Self {
        Self {
            addr: None,
            idle_timeout: Duration::from_secs(5),
        }
    }
}

impl MetricsPort {
    /// From the flags, else the file, else the defaults (off).
    pub(super) fn resolve(args: &RunArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            addr: args.metrics_addr.clone().or(file.metrics_addr.clone()),
            idle_timeout: at_least_1(
                "metrics_idle_timeout",
                secs(
                    args.metrics_idle_timeout,
                    file.metrics_idle_timeout,
                    d.idle_timeout,
                ),
            )?,
        })
    }
}

/// The process around the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Process {
    /// Detach from the terminal after binding (`--daemon`, a flag only).
    pub daemon: bool,
    /// Where to write the process id, if anywhere.
    pub pid_file: Option<PathBuf>,
}

impl Process {
    /// From the flags, else the file.
    pub(super) fn resolve(args: &RunArgs, file: &FileConfig) -> Self {
        Self {
            daemon: args.daemon,
            pid_file: args.pid_file.clone().or(file.pid_file.clone()),
        }
    }
}
