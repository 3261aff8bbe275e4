//! The config file (`--config FILE`): every key optional, unknown keys an
//! error.

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

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
        let text = read_text(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Like [`FileConfig::load`], for a reload of a running server: the
    /// file is read until two reads [`SETTLE`] apart agree (at most
    /// [`SETTLE_READS`] reads), so that a file caught while it is being
    /// written is not taken half written (which can be valid TOML that
    /// drops the settings still to come); one that never holds still is
    /// refused. A file written by renaming a whole one over it settles at
    /// the second read.
    pub fn load_settled(path: &Path) -> Result<Self, ConfigError> {
        let read = || read_text(path);
        let pause = || std::thread::sleep(SETTLE);
        let text = settled(read, pause).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = text.ok_or_else(|| ConfigError::Unsettled {
            path: path.to_owned(),
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

/// A config file's text: a regular file of at most 1 MiB
/// ([`echo_tls::read_small_file`]; a FIFO put in its place would hold a
/// reload, and every reload after it, until someone wrote to it).
fn read_text(path: &Path) -> io::Result<String> {
    String::from_utf8(echo_tls::read_small_file(path)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// The pause between two reads of a file a reload takes.
pub const SETTLE: Duration = Duration::from_millis(100);
/// The most reads of a file a reload makes before it gives up (2 s).
pub const SETTLE_READS: usize = 20;

/// What `read` gives twice in a row, with a `pause` between reads; none
/// if it has not after [`SETTLE_READS`] reads.
fn settled(
    mut read: impl FnMut() -> io::Result<String>,
    mut pause: impl FnMut(),
) -> io::Result<Option<String>> {
    let mut last = read()?;
    for _ in 1..SETTLE_READS {
        pause();
        let next = read()?;
        if next == last {
            return Ok(Some(next));
        }
        last = next;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file read as `texts` says, one text a read (the last one again
    /// once they run out); how many reads were made.
    fn reads(texts: &[&str]) -> (io::Result<Option<String>>, usize) {
        let mut count = 0;
        let read = || {
            count += 1;
            Ok(texts[(count - 1).min(texts.len() - 1)].to_owned())
        };
        let result = settled(read, || {});
        (result, count)
    }

    #[test]
    fn a_file_is_taken_once_two_reads_agree() {
        let (text, count) = reads(&["max_repeat = 7\n", "max_repeat = 7\n"]);
        assert_eq!(
            (text.unwrap().as_deref(), count),
            (Some("max_repeat = 7\n"), 2)
        );
        // Caught while written: the whole text, not the first half.
        let growing = [
            "max_repeat = 7\n",
            "max_repeat = 7\nidle_",
            "max_repeat = 7\nidle_timeout = 42\n",
        ];
        let (text, count) = reads(&growing);
        assert_eq!(text.unwrap().as_deref(), Some(growing[2]));
        assert_eq!(count, 4);
    }

    #[test]
    fn a_file_that_never_holds_still_is_refused() {
        let mut count = 0;
        let read = || {
            count += 1;
            Ok(format!("# {count}\n"))
        };
        assert!(settled(read, || {}).unwrap().is_none());
        assert_eq!(count, SETTLE_READS);
        let failing = || Err(io::Error::other("gone"));
        assert!(settled(failing, || {}).is_err());
    }
}
