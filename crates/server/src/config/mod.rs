//! Settings: flags, environment, config file, prompt, defaults, in that order.
//!
//! [`ServerConfig`] is nested by subsystem ([`Listen`], [`Tls`], [`Limits`],
//! [`Timeouts`], [`Storage`], [`Logging`], [`Auth`], [`MetricsPort`],
//! [`Process`]); each part has its defaults and resolves itself from the
//! flags ([`RunArgs`]) and the file ([`FileConfig`], whose keys stay flat).

use std::{io, path::PathBuf, time::Duration};

mod args;
mod auth;
mod file;
mod limits;
mod listen;
mod ops;
pub mod reload;
mod settings;
mod store;

pub use args::RunArgs;
pub use auth::Auth;
use echo_proto::Mode;
pub use file::FileConfig;
pub use limits::{Limits, MIN_OUTPUT_BUFFER, Timeouts};
pub use listen::{Listen, Tls};
pub use ops::{Logging, MetricsPort, Process};
pub use settings::Settings;
pub use store::{Storage, StoreChoice, parse_store};

use crate::store::{Lifetimes, StoreLocation};

pub use echo_proto::{DEFAULT_HOST, DEFAULT_PORT};

/// Identification or authentication, unless a flag or the file says.
const DEFAULT_MODE: Mode = Mode::Auth;

/// Everything the server needs to run, fully resolved, by subsystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Identification or authentication.
    pub mode: Mode,
    /// Where to listen.
    pub listen: Listen,
    /// Whether and with which certificate the port speaks TLS.
    pub tls: Tls,
    /// How much a connection, and one address, may hold.
    pub limits: Limits,
    /// How long a connection may take at each step.
    pub timeouts: Timeouts,
    /// Where users and sessions live (and the data directory).
    pub store: Storage,
    /// The log files.
    pub log: Logging,
    /// Passwords, sessions, attempts.
    pub auth: Auth,
    /// The operator's HTTP port (`/metrics`, `/healthz`).
    pub metrics: MetricsPort,
    /// Detaching and the pid file.
    pub process: Process,
}

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not valid TOML or has an unknown or mistyped key.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where.
        message: String,
    },
    /// A value is out of its range.
    #[error("invalid setting: {0}")]
    Invalid(String),
    /// The file kept changing while a reload read it: it is being written.
    #[error(
        "config file {} kept changing while it was read (is it still being written?); write it whole, to another name and then rename it, and reload again",
        path.display()
    )]
    Unsettled {
        /// The file.
        path: PathBuf,
    },
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            mode: DEFAULT_MODE,
            listen: Listen::default(),
            tls: Tls::default(),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            store: Storage::default(),
            log: Logging::default(),
            auth: Auth::default(),
            metrics: MetricsPort::default(),
            process: Process::default(),
        }
    }
}

impl ServerConfig {
    /// Merges the sources: flags and environment (already merged by clap),
    /// then the config file, then `ask_port` (called only when no source named
    /// a port; it returns `None` when there is no one to ask), then defaults.
    pub fn resolve(
        args: &RunArgs,
        file: FileConfig,
        ask_port: impl FnOnce(u16) -> io::Result<Option<u16>>,
    ) -> Result<Self, ConfigError> {
        let file = &file;
        // Fields are resolved in the order written: the port is asked first.
        Ok(Self {
            listen: Listen::resolve(args, file, ask_port)?,
            store: Storage::resolve(args, file)?,
            tls: Tls::resolve(args, file)?,
            mode: pick(args.mode, file.mode, DEFAULT_MODE),
            limits: Limits::resolve(args, file)?,
            auth: Auth::resolve(file)?,
            timeouts: Timeouts::resolve(args, file)?,
            metrics: MetricsPort::resolve(args, file)?,
            log: Logging::resolve(args, file)?,
            process: Process::resolve(args, file),
        })
    }

    /// Which store to open.
    pub fn store_location(&self) -> StoreLocation {
        self.store.location()
    }

    /// Session lifetimes in seconds, for the store.
    pub fn lifetimes(&self) -> Lifetimes {
        self.auth.lifetimes()
    }
}

/// The flag's value, else the file's, else the default.
fn pick<T>(flag: Option<T>, key: Option<T>, default: T) -> T {
    flag.or(key).unwrap_or(default)
}

/// Seconds from the flag, else from the file, else the default.
fn secs(flag: Option<u64>, key: Option<u64>, default: Duration) -> Duration {
    flag.or(key).map_or(default, Duration::from_secs)
}

/// `value`, unless it is zero: a count or a time named `name` must be at
/// least 1.
fn at_least_1<T: Default + PartialEq>(name: &str, value: T) -> Result<T, ConfigError> {
    if value == T::default() {
        return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
    }
    Ok(value)
}
