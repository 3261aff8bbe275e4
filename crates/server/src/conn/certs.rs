//! The server's TLS identity: its certificate and key files (given, or
//! generated self-signed in `DATA_DIR/tls/` on the first start), the
//! rustls configuration new connections get, and its reload (SIGHUP,
//! `echo-server reload`).

use std::{
    fs,
    os::unix::fs::DirBuilderExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use echo_tls::{Fingerprint, TlsError, rustls};
use tracing::info;

use crate::{config::ServerConfig, sys::sync::lock};

/// The certificate and key a TLS server uses, and the configuration made
/// of them; [`ServerTls::install`] replaces all at once.
#[derive(Debug)]
pub struct ServerTls {
    current: Mutex<Loaded>,
}

/// A certificate and key read and checked: what new connections get once
/// installed.
#[derive(Debug)]
pub struct Loaded {
    cert: PathBuf,
    config: Arc<rustls::ServerConfig>,
    fingerprint: Fingerprint,
}

impl ServerTls {
    /// The TLS identity `config` names: `tls_cert` and `tls_key`, or the
    /// pair in `DATA_DIR/tls/`, generated when neither file is there yet.
    pub fn prepare(config: &ServerConfig) -> Result<Self, TlsError> {
        let (cert, key) = files(config);
        if config.tls.files.is_none() && !cert.exists() && !key.exists() {
            let dir = config.store.data_dir.join("tls");
            generate(&dir, &cert, &key, &config.listen.host)?;
        }
        Self::open(config)
    }

    /// The TLS identity `config` names, as it is (nothing generated).
    pub fn open(config: &ServerConfig) -> Result<Self, TlsError> {
        let current = Mutex::new(Self::load(config)?);
        Ok(Self { current })
    }

    /// The configuration for a new connection.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&lock(&self.current).config)
    }

    /// The fingerprint of the key served now.
    pub fn fingerprint(&self) -> Fingerprint {
        lock(&self.current).fingerprint.clone()
    }

    /// Reads the files `config` names (again, on a reload), without using
    /// them yet: a reload checks everything before it changes anything.
    pub fn load(config: &ServerConfig) -> Result<Loaded, TlsError> {
        let (cert, key) = files(config);
        load(cert, key)
    }

    /// Puts `loaded` in force: new connections get it, established ones
    /// keep theirs. The fingerprints before and after.
    pub fn install(&self, loaded: Loaded) -> (Fingerprint, Fingerprint) {
        let new = loaded.fingerprint.clone();
        let old = std::mem::replace(&mut *lock(&self.current), loaded);
        (old.fingerprint, new)
    }

    /// The certificate file.
    pub fn cert_path(&self) -> PathBuf {
        lock(&self.current).cert.clone()
    }
}

/// The certificate and key files `config` names.
fn files(config: &ServerConfig) -> (PathBuf, PathBuf) {
    match &config.tls.files {
        Some((cert, key)) => (cert.clone(), key.clone()),
        None => {
            let dir = config.store.data_dir.join("tls");
            (dir.join("cert.pem"), dir.join("key.pem"))
        }
    }
}

fn load(cert: PathBuf, key: PathBuf) -> Result<Loaded, TlsError> {
    let pair = echo_tls::load_pair(&cert, &key)?;
    let fingerprint = Fingerprint::of(&pair.chain[0])?;
    let config = Arc::new(echo_tls::server_config(&pair)?);
    Ok(Loaded {
        cert,
        config,
        fingerprint,
    })
}

/// Makes a self-signed pair for the names a client may use for this
/// machine.
fn generate(dir: &Path, cert: &Path, key: &Path, host: &str) -> Result<(), TlsError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| TlsError::File {
            path: dir.display().to_string(),
            source,
        })?;
    let names = certificate_names(host);
    let pair = echo_tls::self_signed(&names)?;
    echo_tls::write_pair(&pair, cert, key)?;
    info!(cert = %cert.display(), names = ?names, "generated a self-signed TLS certificate");
    Ok(())
}

/// `localhost`, the loopback addresses, the host name, and `host` when it
/// names one address (not a wildcard).
fn certificate_names(host: &str) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    if let Ok(name) = nix::unistd::gethostname()
        && let Some(name) = name.to_str()
    {
        names.push(name.to_owned());
    }
    let wildcard = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified());
    if !wildcard && !host.is_empty() {
        names.push(host.to_owned());
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|name| seen.insert(name.to_ascii_lowercase()));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_leave_out_wildcards_and_repeats() {
        let names = certificate_names("0.0.0.0");
        assert_eq!(&names[..3], ["localhost", "127.0.0.1", "::1"]);
        assert!(!names.iter().any(|n| n == "0.0.0.0"));
        assert!(!certificate_names("::").iter().any(|n| n == "::"));
        let names = certificate_names("localhost");
        assert_eq!(names.iter().filter(|n| *n == "localhost").count(), 1);
        assert!(
            certificate_names("10.1.2.3")
                .iter()
                .any(|n| n == "10.1.2.3")
        );
    }

    #[test]
    fn first_start_generates_later_starts_reuse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ServerConfig::default();
        config.store.data_dir = dir.path().to_owned();
        let first = ServerTls::prepare(&config).expect("generate");
        let second = ServerTls::prepare(&config).expect("reuse");
        assert_eq!(first.fingerprint(), second.fingerprint());
        use std::os::unix::fs::PermissionsExt as _;
        let key = dir.path().join("tls/key.pem");
        let mode = fs::metadata(key).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A bad pair is refused before anything changes.
        fs::write(first.cert_path(), "garbage").expect("write");
        assert!(ServerTls::load(&config).is_err());
        assert_eq!(first.fingerprint(), second.fingerprint());
    }
}
