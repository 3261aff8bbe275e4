//! The token jar: one session token per server (`host:port`), kept in one
//! file that only its owner can read, replaced atomically.
//!
//! Every resume replaces the token, and the server treats an old token
//! presented again as stolen. Clients on one machine sharing a jar must
//! therefore take turns from reading a token until its successor is saved:
//! [`TokenJar::lock`] holds an exclusive lock on `tokens.json.lock` for
//! that long.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use nix::fcntl::{Flock, FlockArg};

use echo_proto::Secret;
use serde::{Deserialize, Serialize};

use crate::ClientError;

/// The token file.
#[derive(Debug, Clone)]
pub struct TokenJar {
    path: PathBuf,
}

/// Held while one client reads, uses and replaces a token; released when
/// dropped.
#[derive(Debug)]
pub struct JarLock {
    _lock: Flock<File>,
}

/// How long a client waits for another one to finish with the jar.
const LOCK_WAIT: Duration = Duration::from_secs(30);

#[derive(Default, Serialize, Deserialize)]
struct JarFile {
    tokens: BTreeMap<String, Secret>,
}

impl TokenJar {
    /// A jar kept at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// `$XDG_STATE_HOME/echo-client/tokens.json`, or
    /// `~/.local/state/echo-client/tokens.json`.
    pub fn default_path() -> Option<PathBuf> {
        state_dir().map(|dir| dir.join("tokens.json"))
    }

    /// Where the jar is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits (up to 30 s) until no other client on this machine is using
    /// the jar, and keeps others waiting until the returned lock is dropped.
    pub async fn lock(&self) -> Result<JarLock, ClientError> {
        self.create_dir()?;
        let mut lock_path = self.path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|err| self.local_error(err))?;
        let wait = tokio::task::spawn_blocking(move || {
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| errno)
        });
        match tokio::time::timeout(LOCK_WAIT, wait).await {
            Ok(Ok(Ok(lock))) => Ok(JarLock { _lock: lock }),
            Ok(Ok(Err(errno))) => Err(self.local_error(errno.into())),
            Ok(Err(join)) => Err(ClientError::local_from("token file lock", join)),
            Err(_) => Err(ClientError::Local(format!(
                "another echo-client has held the token file {} for {} s; try again",
                self.path.display(),
                LOCK_WAIT.as_secs()
            ))),
        }
    }

    /// The token saved for `server`.
    pub fn get(&self, server: &str) -> Result<Option<Secret>, ClientError> {
        Ok(self.load()?.tokens.remove(server))
    }

    /// Saves `token` for `server`, replacing any earlier one.
    pub fn set(&self, server: &str, token: &Secret) -> Result<(), ClientError> {
        let mut jar = self.load()?;
        jar.tokens.insert(server.to_owned(), token.clone());
        self.save(&jar)
    }

    /// Forgets the token for `server`.
    pub fn remove(&self, server: &str) -> Result<(), ClientError> {
        let mut jar = self.load()?;
        if jar.tokens.remove(server).is_some() {
            self.save(&jar)?;
        }
        Ok(())
    }

    fn load(&self) -> Result<JarFile, ClientError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| ClientError::DamagedTokenFile {
                    path: self.path.clone(),
                    source,
                })
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(JarFile::default()),
            Err(err) => Err(self.local_error(err)),
        }
    }

    /// Writes a temporary file of its own (a name no other process uses),
    /// created with mode 0600, syncs it, renames it over the jar and syncs
    /// the directory: a crash leaves the old jar or the new one.
    fn save(&self, jar: &JarFile) -> Result<(), ClientError> {
        let dir = self.create_dir()?;
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(format!(".tmp.{}.{:x}", std::process::id(), random_suffix()));
        let tmp = PathBuf::from(tmp);
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&tmp)?;
            // Serializing a map of strings cannot fail.
            #[allow(clippy::unwrap_used)]
            file.write_all(&serde_json::to_vec_pretty(jar).unwrap())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            File::open(&dir)?.sync_all()
        };
        write().map_err(|err| {
            let _ = std::fs::remove_file(&tmp);
            self.local_error(err)
        })
    }

    /// Creates the jar's directory if missing; returns it.
    fn create_dir(&self) -> Result<PathBuf, ClientError> {
        let dir = match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => dir.to_owned(),
            None => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|err| self.local_error(err))?;
        Ok(dir)
    }

    fn local_error(&self, err: std::io::Error) -> ClientError {
        ClientError::local_from(format!("token file {}", self.path.display()), err)
    }
}

/// Bits that make a temporary file's name unlikely to be anyone else's.
fn random_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// The client's state directory (XDG).
pub(crate) fn state_dir() -> Option<PathBuf> {
    let from_env = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    from_env
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .map(|dir| dir.join("echo-client"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn tokens_are_kept_per_server_in_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let jar = TokenJar::new(dir.path().join("sub/tokens.json"));
        assert_eq!(jar.get("a:1").unwrap(), None);
        jar.set("a:1", &Secret::new("one")).unwrap();
        jar.set("b:2", &Secret::new("two")).unwrap();
        jar.set("a:1", &Secret::new("three")).unwrap();
        assert_eq!(jar.get("a:1").unwrap(), Some(Secret::new("three")));
        assert_eq!(jar.get("b:2").unwrap(), Some(Secret::new("two")));
        let mode = std::fs::metadata(jar.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        jar.remove("a:1").unwrap();
        assert_eq!(jar.get("a:1").unwrap(), None);
        assert_eq!(jar.get("b:2").unwrap(), Some(Secret::new("two")));
    }

    #[test]
    fn a_damaged_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = TokenJar::new(&path).get("a:1").unwrap_err().to_string();
        assert!(
            err.contains("damaged") && err.contains("tokens.json"),
            "{err}"
        );
    }
}
