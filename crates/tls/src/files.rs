//! Certificate and key files (PEM), and self-signed certificates.

use std::{
    fmt, fs,
    io::{self, Read as _, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::error::TlsError;

/// A certificate chain (the server's own first) and its private key.
pub struct CertifiedPair {
    /// The chain, the end-entity certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key of the first certificate.
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for CertifiedPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedPair")
            .field("chain", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// A freshly generated certificate and key, in PEM.
pub struct SelfSigned {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfSigned")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl SelfSigned {
    /// The pair the PEM holds.
    pub fn pair(&self) -> Result<CertifiedPair, TlsError> {
        pair_from_pem(
            self.cert_pem.as_bytes(),
            self.key_pem.as_bytes(),
            "generated",
        )
    }
}

/// The most bytes [`read_small_file`] reads: a file of settings, a
/// certificate chain or a key is a few KiB.
pub const MAX_SMALL_FILE: u64 = 1024 * 1024;

/// Reads a small file whole (settings, a certificate chain, a key): one
/// that is not a regular file is refused without being opened (a FIFO
/// would hold the reader until someone writes to it, a device may never
/// end), and so is one larger than [`MAX_SMALL_FILE`].
pub fn read_small_file(path: &Path) -> io::Result<Vec<u8>> {
    if !fs::metadata(path)?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(MAX_SMALL_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SMALL_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} KiB", MAX_SMALL_FILE / 1024),
        ));
    }
    Ok(bytes)
}

/// Reads a PEM certificate chain and a PEM private key.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedPair, TlsError> {
    let read = |path: &Path| {
        read_small_file(path).map_err(|source| TlsError::File {
            path: path.display().to_string(),
            source,
        })
    };
    let chain = chain_from_pem(&read(cert)?, &cert.display().to_string())?;
    let key_pem = read(key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| TlsError::Pem {
        path: key.display().to_string(),
        reason: format!("no private key ({})", pem_reason(&err)),
    })?;
    Ok(CertifiedPair { chain, key })
}

/// The certificates of a PEM file, in order; at least one.
pub fn chain_from_pem(pem: &[u8], path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::Pem {
            path: path.to_owned(),
            reason: pem_reason(&err),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            reason: "no certificate".into(),
        });
    }
    Ok(chain)
}

fn pair_from_pem(cert: &[u8], key: &[u8], path: &str) -> Result<CertifiedPair, TlsError> {
    let chain = chain_from_pem(cert, path)?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|err| TlsError::Pem {
        path: path.to_owned(),
        reason: pem_reason(&err),
    })?;
    Ok(CertifiedPair { chain, key })
}

/// Why PEM did not parse, without quoting it (a key file's content is a
/// secret).
fn pem_reason(err: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match err {
        Error::NoItemsFound => "nothing in PEM form".into(),
        Error::MissingSectionEnd { .. } => "a PEM section without its END line".into(),
        Error::IllegalSectionStart { .. } => "a malformed BEGIN line".into(),
        Error::Base64Decode(_) => "bad base64 in a PEM section".into(),
        Error::Io(err) => err.to_string(),
        _ => "malformed PEM".into(),
    }
}

/// A self-signed certificate for `names` (host names and IP addresses)
/// with a new ECDSA P-256 key.
pub fn self_signed(names: &[String]) -> Result<SelfSigned, TlsError> {
    let generate = |err: rcgen::Error| TlsError::Generate(err.to_string());
    let key = rcgen::KeyPair::generate().map_err(generate)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(generate)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "echo-server");
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok(SelfSigned {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A new certificate authority (its certificate, PEM) and, for each entry
/// of `leaves` (the names of one server), a pair it signs. For tests and
/// private deployments that want a CA of their own without OpenSSL.
pub fn ca_signed(leaves: &[Vec<String>]) -> Result<(String, Vec<SelfSigned>), TlsError> {
    let generate = |err: rcgen::Error| TlsError::Generate(err.to_string());
    let ca_key = rcgen::KeyPair::generate().map_err(generate)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "echo test CA");
    let issuer = rcgen::CertifiedIssuer::self_signed(params, ca_key).map_err(generate)?;
    let pairs = leaves
        .iter()
        .map(|names| {
            let key = rcgen::KeyPair::generate().map_err(generate)?;
            let cert = rcgen::CertificateParams::new(names.clone())
                .map_err(generate)?
                .signed_by(&key, &issuer)
                .map_err(generate)?;
            Ok(SelfSigned {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            })
        })
        .collect::<Result<_, TlsError>>()?;
    Ok((issuer.pem(), pairs))
}

/// Writes a generated pair: the certificate world-readable (0644), the key
/// only for its owner (0600, created so, never there before).
pub fn write_pair(pair: &SelfSigned, cert: &Path, key: &Path) -> Result<(), TlsError> {
    let write = |path: &Path, mode: u32, text: &str| {
        let file = |source| TlsError::File {
            path: path.display().to_string(),
            source,
        };
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(file)?;
        out.write_all(text.as_bytes()).map_err(file)?;
        out.sync_all().map_err(file)
    };
    write(key, 0o600, &pair.key_pem)?;
    write(cert, 0o644, &pair.cert_pem)
}

/// A new certificate for `pair`'s key (a renewal keeps the fingerprint).
#[cfg(test)]
pub(crate) fn reissue(pair: &SelfSigned, names: &[String]) -> Result<SelfSigned, TlsError> {
    let generate = |err: rcgen::Error| TlsError::Generate(err.to_string());
    let key = rcgen::KeyPair::from_pem(&pair.key_pem).map_err(generate)?;
    let params = rcgen::CertificateParams::new(names.to_vec()).map_err(generate)?;
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok(SelfSigned {
        cert_pem: cert.pem(),
        key_pem: pair.key_pem.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_file_is_read_and_a_fifo_a_device_or_a_big_file_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.expect("mkfifo").success());
        // Opened, a FIFO with no writer would block: bounded, in a thread.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(read_small_file(&fifo).map_err(|e| e.to_string())));
        let read = rx.recv_timeout(std::time::Duration::from_secs(5));
        assert_eq!(
            read.expect("the read blocked"),
            Err("not a regular file".into())
        );
        let device = read_small_file(Path::new("/dev/zero")).map_err(|e| e.to_string());
        assert_eq!(device, Err("not a regular file".into()));
        let file = dir.path().join("file");
        let limit = usize::try_from(MAX_SMALL_FILE).expect("fits");
        fs::write(&file, vec![b'#'; limit]).expect("write");
        assert_eq!(read_small_file(&file).expect("at the limit").len(), limit);
        fs::write(&file, vec![b'#'; limit + 1]).expect("write");
        let big = read_small_file(&file).map_err(|e| e.to_string());
        assert_eq!(big, Err("larger than 1024 KiB".into()));
    }

    #[test]
    fn written_pair_loads_back_and_the_key_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let generated = self_signed(&["localhost".into(), "127.0.0.1".into()]).expect("gen");
        write_pair(&generated, &cert, &key).expect("write");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(&key).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = load_pair(&cert, &key).expect("load");
        assert_eq!(loaded.chain.len(), 1);
        assert!(!format!("{loaded:?} {generated:?}").contains("PRIVATE"));
        // An existing key file is never overwritten.
        assert!(write_pair(&generated, &cert, &key).is_err());
    }

    #[test]
    fn bad_files_are_named_without_their_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        fs::write(&cert, "not a certificate").expect("write");
        fs::write(&key, "secret stuff").expect("write");
        let err = load_pair(&cert, &key).expect_err("bad cert").to_string();
        assert!(
            err.contains("cert.pem") && err.contains("no certificate"),
            "{err}"
        );
        let generated = self_signed(&["localhost".into()]).expect("gen");
        fs::write(&cert, &generated.cert_pem).expect("write");
        let err = load_pair(&cert, &key).expect_err("bad key").to_string();
        assert!(err.contains("key.pem") && !err.contains("secret"), "{err}");
        let err = load_pair(&dir.path().join("none.pem"), &key).expect_err("missing");
        assert!(err.to_string().contains("none.pem"));
    }
}
