//! TLS for echo-server, echo-client and echo-bench, in one place: rustls
//! with the `ring` provider (no OpenSSL, no aws-lc), key fingerprints in
//! OpenSSH's form, certificate and key files, self-signed certificates.
//!
//! Nothing here logs, and no error or `Debug` output holds key material.

mod error;
mod files;

use std::{fmt, sync::Arc};

use base64::Engine as _;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

pub use error::TlsError;
pub use files::{
    CertifiedPair, MAX_SMALL_FILE, SelfSigned, ca_signed, chain_from_pem, load_pair,
    read_small_file, self_signed, write_pair,
};
pub use rustls;
pub use rustls_pki_types as pki_types;

/// The fingerprint of a server's key: `SHA256:` and the standard base64,
/// without padding, of the SHA-256 of the certificate's
/// SubjectPublicKeyInfo in DER, as OpenSSH prints host keys. It stays the
/// same when a certificate is renewed with the same key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of the key `cert` certifies.
    pub fn of(cert: &CertificateDer<'_>) -> Result<Self, TlsError> {
        let parsed = webpki::EndEntityCert::try_from(cert)
            .map_err(|err| TlsError::Certificate(err.to_string()))?;
        Ok(Self::of_spki(&parsed.subject_public_key_info()))
    }

    /// The fingerprint of a SubjectPublicKeyInfo in DER.
    pub fn of_spki(spki: &[u8]) -> Self {
        let digest = Sha256::digest(spki);
        Self(format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        ))
    }

    /// Reads a fingerprint as printed; `None` unless it has the form.
    pub fn parse(text: &str) -> Option<Self> {
        let encoded = text.strip_prefix("SHA256:")?;
        let digest = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(encoded)
            .ok()?;
        (digest.len() == 32).then(|| Self(text.to_owned()))
    }

    /// The printed form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The one crypto provider everything uses: `ring`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration for `pair`: TLS 1.3 and 1.2, no client
/// certificates.
pub fn server_config(pair: &CertifiedPair) -> Result<rustls::ServerConfig, TlsError> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::ALL_VERSIONS)?
        .with_no_client_auth()
        .with_single_cert(pair.chain.clone(), pair.key.clone_key())?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_has_openssh_form_and_parses_back() {
        let pair = self_signed(&["localhost".to_owned()]).expect("generate");
        let pair = pair.pair().expect("parse");
        let fp = Fingerprint::of(&pair.chain[0]).expect("fingerprint");
        let text = fp.to_string();
        assert!(text.starts_with("SHA256:"), "{text}");
        // 32 bytes in base64 without padding: 43 characters.
        assert_eq!(text.len(), "SHA256:".len() + 43, "{text}");
        assert!(!text.ends_with('='));
        assert_eq!(Fingerprint::parse(&text), Some(fp));
        assert_eq!(Fingerprint::parse("SHA256:abc"), None);
        assert_eq!(Fingerprint::parse("MD5:abc"), None);
    }

    #[test]
    fn fingerprint_is_of_the_key_not_the_certificate() {
        let generated = self_signed(&["localhost".to_owned()]).expect("generate");
        let again = files::reissue(&generated, &["localhost".to_owned(), "other".to_owned()])
            .expect("reissue");
        let (pair, again) = (generated.pair().expect("pair"), again.pair().expect("pair"));
        assert_ne!(pair.chain[0], again.chain[0]);
        assert_eq!(
            Fingerprint::of(&pair.chain[0]).expect("fp"),
            Fingerprint::of(&again.chain[0]).expect("fp")
        );
        let other = self_signed(&["localhost".to_owned()]).expect("generate");
        let other = other.pair().expect("pair");
        assert_ne!(
            Fingerprint::of(&pair.chain[0]).expect("fp"),
            Fingerprint::of(&other.chain[0]).expect("fp")
        );
    }

    #[test]
    fn server_config_refuses_a_key_of_another_certificate() {
        let one = self_signed(&["localhost".to_owned()]).expect("generate");
        let two = self_signed(&["localhost".to_owned()]).expect("generate");
        let (one, two) = (one.pair().expect("pair"), two.pair().expect("pair"));
        let mixed = CertifiedPair {
            chain: one.chain.clone(),
            key: two.key.clone_key(),
        };
        assert!(server_config(&one).is_ok());
        let err = server_config(&mixed).expect_err("mismatched key");
        assert!(!format!("{err} {err:?}").contains("PRIVATE KEY"));
    }
}
