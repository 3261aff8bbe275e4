//! `known_hosts`: the servers' keys this client has met, one line
//! `HOST:PORT SHA256:...` per server, as OpenSSH keeps its own. Lines
//! starting with `#` and blank lines are kept and skipped.

use std::{
    fs,
    io::{self, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use echo_tls::Fingerprint;

/// A known_hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHosts {
    path: PathBuf,
}

/// What the file says of a server's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// The key is the one recorded.
    Same,
    /// Another key is recorded, on this line (counted from 1).
    Changed {
        /// The recorded key.
        recorded: String,
        /// Its line.
        line: usize,
    },
    /// Nothing is recorded for the server.
    Unknown,
}

impl KnownHosts {
    /// The file at `path` (it need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Looks `server` (`host:port`) up.
    pub fn check(&self, server: &str, key: &Fingerprint) -> io::Result<Known> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Known::Unknown),
            Err(err) => return Err(err),
        };
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            if words.next() != Some(server) {
                continue;
            }
            let recorded = words.next().unwrap_or_default();
            return Ok(if recorded == key.as_str() {
                Known::Same
            } else {
                Known::Changed {
                    recorded: recorded.to_owned(),
                    line: index + 1,
                }
            });
        }
        Ok(Known::Unknown)
    }

    /// Records `server`'s key: one line appended, the file created 0600
    /// (and its directory 0700) if it is not there.
    pub fn add(&self, server: &str, key: &Fingerprint) -> io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            use std::os::unix::fs::DirBuilderExt as _;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let mut file = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)?;
        // One write of one whole line: appends from clients running at
        // once do not interleave.
        file.write_all(Self::line(server, key).as_bytes())?;
        file.sync_all()
    }

    /// The line that records `server`'s key.
    pub fn line(server: &str, key: &Fingerprint) -> String {
        format!("{server} {key}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Fingerprint {
        Fingerprint::of_spki(&[byte; 8])
    }

    #[test]
    fn added_keys_are_found_and_a_changed_key_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = KnownHosts::new(dir.path().join("state/known_hosts"));
        assert_eq!(hosts.check("a:1", &key(1)).unwrap(), Known::Unknown);
        hosts.add("a:1", &key(1)).unwrap();
        hosts.add("b:2", &key(2)).unwrap();
        assert_eq!(hosts.check("a:1", &key(1)).unwrap(), Known::Same);
        assert_eq!(
            hosts.check("b:2", &key(3)).unwrap(),
            Known::Changed {
                recorded: key(2).to_string(),
                line: 2
            }
        );
        assert_eq!(hosts.check("a:2", &key(1)).unwrap(), Known::Unknown);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(hosts.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        fs::write(&path, format!("# a:1 {}\n\na:1 {}\n", key(9), key(1))).unwrap();
        let hosts = KnownHosts::new(&path);
        assert_eq!(hosts.check("a:1", &key(1)).unwrap(), Known::Same);
        assert_eq!(
            hosts.check("a:1", &key(2)).unwrap(),
            Known::Changed {
                recorded: key(1).to_string(),
                line: 3
            }
        );
    }
}
