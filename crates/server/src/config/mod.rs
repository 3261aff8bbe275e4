//! Settings: flags, environment, config file, prompt, defaults, in that order.

use std::{io, path::PathBuf, time::Duration};

mod args;
mod file;

pub use args::RunArgs;
use echo_proto::Mode;
pub use file::FileConfig;
use ipnet::IpNet;

use crate::{
    ops::logging::LogFormat,
    store::{
        Lifetimes, PgUrl, StoreLocation,
        postgres::{DEFAULT_POOL_SIZE, DEFAULT_TIMEOUT, PgOptions},
    },
};

pub use echo_proto::{DEFAULT_HOST, DEFAULT_PORT};

/// Smallest `max_output_buffer`: the output a connection writes out in one
/// go (its write buffer's backpressure boundary).
pub const MIN_OUTPUT_BUFFER: usize = 64 * 1024;

/// Everything the server needs to run, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to listen on.
    pub host: String,
    /// Port to try first; 0 lets the OS pick any free port.
    pub port: u16,
    /// How many ports after `port` to try when it is busy.
    pub port_search: u16,
    /// Identification or authentication.
    pub mode: Mode,
    /// Directory of the file store (and the TLS pair, the control socket).
    pub data_dir: PathBuf,
    /// The PostgreSQL store (`--store URL`); `None`: the file store in
    /// `data_dir`.
    pub store_url: Option<PgUrl>,
    /// Connections at most in the PostgreSQL store's pool.
    pub store_pool_size: usize,
    /// Longest one call to the PostgreSQL store may take; past it the call
    /// fails as `unavailable` and the store counts as down.
    pub store_timeout: Duration,
    /// Directory of the rotating log files.
    pub log_dir: PathBuf,
    /// How many daily log files to keep.
    pub log_keep: usize,
    /// Default log filter when `RUST_LOG` is not set (`info`, `debug`, ...).
    pub log_level: String,
    /// Text lines or JSON objects.
    pub log_format: LogFormat,
    /// Connections served at once; more get `server_busy`.
    pub max_connections: usize,
    /// Connections one address (an IPv6 /64) may hold at once; more get
    /// `too_many_connections`.
    pub max_connections_per_ip: usize,
    /// Connections from one address still in the handshake at once.
    pub max_handshakes_per_ip: usize,
    /// Time a connection has to finish identification or authentication.
    pub handshake_timeout: Duration,
    /// Time a client on a TLS port has for the TLS handshake (within
    /// `handshake_timeout`).
    pub tls_handshake_timeout: Duration,
    /// Time an established session may stay silent.
    pub idle_timeout: Duration,
    /// Time a write to a client may take before the client is dropped.
    pub write_timeout: Duration,
    /// Time shutdown waits for connections to close.
    pub drain_timeout: Duration,
    /// Largest frame accepted before authentication, in bytes.
    pub max_frame_handshake: usize,
    /// Largest frame accepted after authentication, in bytes.
    pub max_frame: usize,
    /// Most replies one `/repeat` may ask for.
    pub max_repeat: u32,
    /// Most bytes of output held for one client; over it the client is
    /// dropped (and logged).
    pub max_output_buffer: usize,
    /// Days a session token stays valid without use.
    pub session_idle_days: u64,
    /// Days a session chain stays valid after its login, however used.
    pub session_max_days: u64,
    /// Days an address's name is kept after it was last seen.
    pub identity_days: u64,
    /// Shortest password `register` accepts (never under 8).
    pub min_password_length: usize,
    /// Password attempts (`login`, `register`) one source (an IPv4 address,
    /// an IPv6 /64) may make a minute.
    pub auth_attempts_per_minute: u32,
    /// Whether `ask_auth` names the user last logged in from the address.
    pub suggest_user: bool,
    /// Password jobs (hashing, verifying, strength checks) run at once.
    pub password_workers: usize,
    /// Detach from the terminal after binding.
    pub daemon: bool,
    /// Where to write the process id, if anywhere.
    pub pid_file: Option<PathBuf>,
    /// Where to serve `/metrics` and `/healthz` (HOST:PORT), if anywhere.
    pub metrics_addr: Option<String>,
    /// Time a metrics-port connection has to send each request head (idle
    /// keep-alive connections are closed after it); each request has it
    /// plus 5 s to be answered.
    pub metrics_idle_timeout: Duration,
    /// Balancers whose connections start with a PROXY header.
    pub proxy_protocol_from: Vec<IpNet>,
    /// Whether the port speaks TLS.
    pub tls: bool,
    /// The certificate chain and key files (PEM); `None`: the generated
    /// pair in `DATA_DIR/tls/`.
    pub tls_files: Option<(PathBuf, PathBuf)>,
    /// Whether passwords and tokens may cross a plain port from outside
    /// the loopback range (off: `tls_required`).
    pub allow_plaintext_auth: bool,
}

/// The certificate and key files, given both or neither.
fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        _ => Err(ConfigError::Invalid(
            "tls_cert and tls_key go together: give both or neither".into(),
        )),
    }
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: DEFAULT_HOST.to_owned(),
            port: DEFAULT_PORT,
            port_search: 100,
            mode: Mode::Auth,
            data_dir: PathBuf::from("data"),
            store_url: None,
            store_pool_size: DEFAULT_POOL_SIZE,
            store_timeout: DEFAULT_TIMEOUT,
            log_dir: PathBuf::from("logs"),
            log_keep: 14,
            log_level: "info".to_owned(),
            log_format: LogFormat::Text,
            max_connections: 1024,
            max_connections_per_ip: 256,
            max_handshakes_per_ip: 32,
            handshake_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            max_frame_handshake: 4 * 1024,
            max_frame: echo_proto::DEFAULT_MAX_FRAME_LENGTH,
            max_repeat: 100,
            max_output_buffer: 1024 * 1024,
            session_idle_days: 7,
            session_max_days: 30,
            identity_days: 365,
            min_password_length: 8,
            auth_attempts_per_minute: 30,
            suggest_user: true,
            password_workers: crate::auth::Passwords::default_workers(),
            daemon: false,
            pid_file: None,
            metrics_addr: None,
            metrics_idle_timeout: Duration::from_secs(5),
            proxy_protocol_from: Vec::new(),
            tls: false,
            tls_files: None,
            allow_plaintext_auth: false,
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
        let d = Self::default();
        let port = match args.port.or(file.port) {
            Some(port) => port,
            None => ask_port(d.port)
                .map_err(|err| ConfigError::Invalid(format!("cannot read the port: {err}")))?
                .unwrap_or(d.port),
        };
        let secs = |flag: Option<u64>, key: Option<u64>, default: Duration| {
            flag.or(key).map_or(default, Duration::from_secs)
        };
        let store_url = match args.store.clone().or(file.store).as_deref() {
            None | Some("file") => None,
            Some(url) => Some(
                PgUrl::parse(url, std::env::var("PGPASSWORD").ok())
                    .map_err(|err| ConfigError::Invalid(format!("store: {err}")))?,
            ),
        };
        let config = Self {
            host: args.host.clone().or(file.host).unwrap_or(d.host),
            port,
            port_search: file.port_search.unwrap_or(d.port_search),
            mode: args.mode.or(file.mode).unwrap_or(d.mode),
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or(d.data_dir),
            store_url,
            store_pool_size: file.store_pool_size.unwrap_or(d.store_pool_size),
            store_timeout: secs(args.store_timeout, file.store_timeout, d.store_timeout),
            log_dir: args.log_dir.clone().or(file.log_dir).unwrap_or(d.log_dir),
            log_keep: file.log_keep.unwrap_or(d.log_keep),
            log_level: file.log_level.unwrap_or(d.log_level),
            log_format: args.log_format.or(file.log_format).unwrap_or(d.log_format),
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(d.max_connections),
            max_connections_per_ip: args
                .max_connections_per_ip
                .or(file.max_connections_per_ip)
                .unwrap_or(d.max_connections_per_ip),
            max_handshakes_per_ip: args
                .max_handshakes_per_ip
                .or(file.max_handshakes_per_ip)
                .unwrap_or(d.max_handshakes_per_ip),
            handshake_timeout: secs(
                args.handshake_timeout,
                file.handshake_timeout,
                d.handshake_timeout,
            ),
            tls_handshake_timeout: secs(
                args.tls_handshake_timeout,
                file.tls_handshake_timeout,
                d.tls_handshake_timeout,
            ),
            idle_timeout: secs(args.idle_timeout, file.idle_timeout, d.idle_timeout),
            write_timeout: secs(None, file.write_timeout, d.write_timeout),
            drain_timeout: secs(args.drain_timeout, file.drain_timeout, d.drain_timeout),
            max_frame_handshake: file.max_frame_handshake.unwrap_or(d.max_frame_handshake),
            max_frame: file.max_frame.unwrap_or(d.max_frame),
            max_repeat: file.max_repeat.unwrap_or(d.max_repeat),
            max_output_buffer: file.max_output_buffer.unwrap_or(d.max_output_buffer),
            session_idle_days: file.session_idle_days.unwrap_or(d.session_idle_days),
            session_max_days: file.session_max_days.unwrap_or(d.session_max_days),
            identity_days: file.identity_days.unwrap_or(d.identity_days),
            min_password_length: file.min_password_length.unwrap_or(d.min_password_length),
            auth_attempts_per_minute: file
                .auth_attempts_per_minute
                .unwrap_or(d.auth_attempts_per_minute),
            suggest_user: file.suggest_user.unwrap_or(d.suggest_user),
            password_workers: file.password_workers.unwrap_or(d.password_workers),
            daemon: args.daemon,
            pid_file: args.pid_file.clone().or(file.pid_file),
            metrics_addr: args.metrics_addr.clone().or(file.metrics_addr),
            metrics_idle_timeout: secs(
                args.metrics_idle_timeout,
                file.metrics_idle_timeout,
                d.metrics_idle_timeout,
            ),
            proxy_protocol_from: if args.proxy_protocol_from.is_empty() {
                file.proxy_protocol_from.unwrap_or(d.proxy_protocol_from)
            } else {
                args.proxy_protocol_from.clone()
            },
            tls: args.tls || file.tls.unwrap_or(d.tls),
            tls_files: tls_files(
                args.tls_cert.clone().or(file.tls_cert),
                args.tls_key.clone().or(file.tls_key),
            )?,
            allow_plaintext_auth: file.allow_plaintext_auth.unwrap_or(d.allow_plaintext_auth),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_connections", self.max_connections as u64),
            ("max_connections_per_ip", self.max_connections_per_ip as u64),
            ("password_workers", self.password_workers as u64),
            ("max_handshakes_per_ip", self.max_handshakes_per_ip as u64),
            ("handshake_timeout", self.handshake_timeout.as_secs()),
            (
                "tls_handshake_timeout",
                self.tls_handshake_timeout.as_secs(),
            ),
            ("idle_timeout", self.idle_timeout.as_secs()),
            ("write_timeout", self.write_timeout.as_secs()),
            ("store_timeout", self.store_timeout.as_secs()),
            ("metrics_idle_timeout", self.metrics_idle_timeout.as_secs()),
            ("max_frame_handshake", self.max_frame_handshake as u64),
            ("max_frame", self.max_frame as u64),
            ("max_repeat", u64::from(self.max_repeat)),
            ("log_keep", self.log_keep as u64),
            ("session_idle_days", self.session_idle_days),
            ("session_max_days", self.session_max_days),
            ("identity_days", self.identity_days),
            ("store_pool_size", self.store_pool_size as u64),
            (
                "auth_attempts_per_minute",
                u64::from(self.auth_attempts_per_minute),
            ),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
        }
        if self.max_frame > echo_proto::MAX_FRAME_LENGTH
            || self.max_frame_handshake > self.max_frame
        {
            return Err(ConfigError::Invalid(format!(
                "max_frame_handshake must not exceed max_frame, nor max_frame {} bytes",
                echo_proto::MAX_FRAME_LENGTH
            )));
        }
        if self.max_output_buffer < MIN_OUTPUT_BUFFER {
            return Err(ConfigError::Invalid(format!(
                "max_output_buffer must be at least {MIN_OUTPUT_BUFFER} bytes"
            )));
        }
        if self.min_password_length < crate::auth::passwords::MIN_PASSWORD_CHARS {
            return Err(ConfigError::Invalid(format!(
                "min_password_length must be at least {}",
                crate::auth::passwords::MIN_PASSWORD_CHARS
            )));
        }
        Ok(())
    }

    /// Which store to open.
    pub fn store_location(&self) -> StoreLocation {
        match &self.store_url {
            Some(url) => StoreLocation::Postgres {
                url: Box::new(url.clone()),
                options: PgOptions {
                    pool_size: self.store_pool_size,
                    timeout: self.store_timeout,
                },
            },
            None => StoreLocation::File(self.data_dir.clone()),
        }
    }

    /// Session lifetimes in seconds, for the store.
    pub fn lifetimes(&self) -> Lifetimes {
        Lifetimes {
            idle: self.session_idle_days.saturating_mul(86_400),
            absolute: self.session_max_days.saturating_mul(86_400),
            identity: self.identity_days.saturating_mul(86_400),
        }
    }
}
