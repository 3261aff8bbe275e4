//! The one error type of this crate.

/// What went wrong with a certificate, a key or a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file held no usable certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What was wrong (never the file's content).
        reason: String,
    },
    /// A certificate could not be parsed.
    #[error("bad certificate: {0}")]
    Certificate(String),
    /// rustls refused the configuration (a key that does not match the
    /// certificate, say).
    #[error("{0}")]
    Config(#[from] rustls::Error),
    /// A certificate could not be generated.
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
}
