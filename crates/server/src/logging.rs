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

/// A string that came from a client, as it may appear in a log line: cut to
/// `max` characters (with `…` when cut), and with every character that
/// could forge or disguise a line written as `\u{…}`: control characters
/// (a newline would start a fake line, ESC would colour the terminal that
/// shows the log), bidirectional controls (U+202E would reverse the rest of
/// the line) and the invisible "default ignorable" ones (U+200B, U+00AD,
/// U+FEFF, ...). Formatting allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a> {
    text: &'a str,
    max: usize,
}

/// Longest client-chosen name written to the log, in characters.
pub const MAX_LOGGED_NAME: usize = 64;
/// Longest client-caused error message written to the log, in characters.
pub const MAX_LOGGED_ERROR: usize = 200;

/// `text` from a client, escaped and cut to [`MAX_LOGGED_NAME`] for the log.
pub fn shown(text: &str) -> Shown<'_> {
    Shown {
        text,
        max: MAX_LOGGED_NAME,
    }
}

/// Like [`shown`], cut to `max` characters.
pub fn shown_max(text: &str, max: usize) -> Shown<'_> {
    Shown { text, max }
}

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        let mut chars = self.text.chars();
        for c in chars.by_ref().take(self.max) {
            if crate::names::is_disguising(c) {
                write!(f, "\\u{{{:x}}}", u32::from(c))?;
            } else {
                f.write_char(c)?;
            }
        }
        if chars.next().is_some() {
            f.write_char('…')?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_strings_cannot_forge_or_disguise_a_log_line() {
        assert_eq!(
            shown("ann\n2026-11-21 INFO forged").to_string(),
            "ann\\u{a}2026-11-21 INFO forged"
        );
        assert_eq!(shown("\u{1b}[31mred").to_string(), "\\u{1b}[31mred");
        assert_eq!(shown("abc\u{202e}fed").to_string(), "abc\\u{202e}fed");
        assert_eq!(
            shown("vic\u{ad}tim\u{200b}").to_string(),
            "vic\\u{ad}tim\\u{200b}"
        );
        assert_eq!(
            shown("\u{feff}plain é ü 名").to_string(),
            "\\u{feff}plain é ü 名"
        );
    }

    #[test]
    fn long_client_strings_are_cut() {
        let cut = shown(&"n".repeat(100)).to_string();
        assert_eq!(cut, format!("{}…", "n".repeat(MAX_LOGGED_NAME)));
        assert_eq!(shown_max("abcdef", 3).to_string(), "abc…");
        assert_eq!(shown_max("abc", 3).to_string(), "abc");
    }
}
