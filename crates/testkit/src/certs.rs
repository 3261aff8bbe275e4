//! Certificates for TLS tests, written to files.

use std::path::Path;

/// A new self-signed pair for localhost and 127.0.0.1.
pub fn write_self_signed(cert: &Path, key: &Path) {
    let pair = echo_tls::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    echo_tls::write_pair(&pair, cert, key).unwrap();
}

/// A test CA (its certificate written to `ca`) and, for each entry, a
/// certificate it signs for those names, with its key.
pub fn write_ca_signed(ca: &Path, leaves: &[(&Path, &Path, &[&str])]) {
    let names: Vec<Vec<String>> = leaves
        .iter()
        .map(|(_, _, names)| names.iter().map(|n| n.to_string()).collect())
        .collect();
    let (ca_pem, pairs) = echo_tls::ca_signed(&names).unwrap();
    std::fs::write(ca, ca_pem).unwrap();
    for ((cert, key, _), pair) in leaves.iter().zip(pairs) {
        std::fs::write(cert, pair.cert_pem).unwrap();
        std::fs::write(key, pair.key_pem).unwrap();
    }
}
