//! The config file (`--config FILE`): every key optional, unknown keys an
//! error.

use std::path::{Path, PathBuf};

use echo_proto::Mode;
use ipnet::IpNet;
use serde::Deserialize;

use super::ConfigError;
use crate::{ops::logging::LogFormat, store::postgres::redact_passwords};

/// The config file (`--config FILE`, TOML). Every key is optional; unknown
/// keys are an error so a typo is not silently ignored.
/// `config/server.toml` documents each key with its default. The keys
/// stay flat (one namespace, as in the file); each part of
/// [`super::ServerConfig`] reads its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub(super) host: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) port_search: Option<u16>,
    pub(super) mode: Option<Mode>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) store: Option<String>,
    pub(super) store_pool_size: Option<usize>,
    pub(super) store_timeout: Option<u64>,
    pub(super) log_dir: Option<PathBuf>,
    pub(super) log_keep: Option<usize>,
    pub(super) log_level: Option<String>,
    pub(super) log_format: Option<LogFormat>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_ip: Option<usize>,
    pub(super) max_handshakes_per_ip: Option<usize>,
    pub(super) handshake_timeout: Option<u64>,
    pub(super) tls_handshake_timeout: Option<u64>,
    pub(super) idle_timeout: Option<u64>,
    pub(super) write_timeout: Option<u64>,
    pub(super) drain_timeout: Option<u64>,
    pub(super) max_frame_handshake: Option<usize>,
    pub(super) max_frame: Option<usize>,
    pub(super) max_repeat: Option<u32>,
    pub(super) max_output_buffer: Option<usize>,
    pub(super) session_idle_days: Option<u64>,
    pub(super) session_max_days: Option<u64>,
    pub(super) identity_days: Option<u64>,
    pub(super) min_password_length: Option<usize>,
    pub(super) auth_attempts_per_minute: Option<u32>,
    pub(super) suggest_user: Option<bool>,
    pub(super) password_workers: Option<usize>,
    pub(super) pid_file: Option<PathBuf>,
    pub(super) metrics_addr: Option<String>,
    pub(super) metrics_idle_timeout: Option<u64>,
    pub(super) proxy_protocol_from: Option<Vec<IpNet>>,
    pub(super) tls: Option<bool>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) allow_plaintext_auth: Option<bool>,
}

impl FileConfig {
    /// Reads and parses a config file; errors name the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses config text; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Self, String> {
        // A TOML error quotes the line it is about, which may hold a
        // database password.
        toml::from_str(text).map_err(|err| redact_passwords(&err.to_string()))
    }
}
