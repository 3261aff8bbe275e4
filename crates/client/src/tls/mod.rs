//! TLS for the client, and who it trusts, in this order: the CA of
//! `--ca-file` alone (host name checked); else the system's roots (host
//! name checked); else, when the chain is not trusted, the server's key as
//! recorded in `known_hosts` (SSH's trust on first use, `--trust`).
//!
//! The handshake verifies the server's signature in every case; the key
//! of an untrusted chain is checked against `known_hosts` right after it,
//! before a single frame (let alone a token) is sent.

mod first_byte;

use std::{
    io::{self, BufRead as _, IsTerminal as _, Write as _},
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
};

use echo_tls::{
    Fingerprint,
    pki_types::{CertificateDer, ServerName, UnixTime},
    rustls::{
        self, CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme,
        client::{
            WebPkiServerVerifier,
            danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        },
        crypto::CryptoProvider,
    },
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

use first_byte::FirstByte;

use crate::{
    ClientError,
    known_hosts::{Known, KnownHosts},
};

/// What to do with a server key that `known_hosts` does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Show the fingerprint and ask (on a terminal; elsewhere: `Strict`).
    Ask,
    /// Record it and go on.
    AcceptNew,
    /// Refuse it.
    Strict,
}

/// How to make and check TLS connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The only CA to trust, when given.
    pub ca_file: Option<PathBuf>,
    /// The servers' keys met before.
    pub known_hosts: PathBuf,
    /// Unknown keys.
    pub trust: Trust,
}

/// Makes the TLS handshake with `server` (`host:port`, the key in
/// `known_hosts`) and checks who it is.
pub(crate) async fn connect(
    tcp: TcpStream,
    host: &str,
    server: &str,
    settings: &TlsSettings,
) -> Result<TlsStream<impl AsyncRead + AsyncWrite + Unpin + Send + 'static>, ClientError> {
    let verifier = Arc::new(Verifier::new(settings.ca_file.as_ref())?);
    let config = rustls::ClientConfig::builder_with_provider(echo_tls::provider())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|err| ClientError::local_from(err.to_string(), err))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(&verifier) as Arc<dyn ServerCertVerifier>)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| ClientError::Usage(format!("{host} is not a host name for TLS")))?;
    let first_byte = Arc::new(Mutex::new(None));
    let sniffed = FirstByte {
        inner: tcp,
        seen: Arc::clone(&first_byte),
    };
    let stream = match TlsConnector::from(Arc::new(config))
        .connect(name, sniffed)
        .await
    {
        Ok(stream) => stream,
        Err(err) => {
            let first = *lock(&first_byte);
            if speaks_plain(first) {
                return Err(ClientError::WrongTransport(format!(
                    "{server}: the server does not speak TLS (it may be an echo-server without --tls): connect without --tls"
                )));
            }
            let message = format!("{server}: {}", handshake_failure(&err, first));
            return Err(ClientError::Handshake {
                message,
                source: err,
            });
        }
    };
    let key = lock(&verifier.untrusted_key).take();
    if let Some(key) = key {
        check_known(server, &key, settings)?;
    }
    Ok(stream)
}

/// Locks a mutex; its value is a single assignment, never half-changed.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether a server that sent `first` first answered with something other
/// than TLS: a TLS record starts with its type, 20 to 24; an echo-server
/// without TLS starts with a frame header, whose first byte is 0.
fn speaks_plain(first: Option<u8>) -> bool {
    first.is_some_and(|byte| !(20..=24).contains(&byte))
}

/// A failed handshake in one sentence; `first` is the first byte the
/// server sent, if any (not a plain server's: [`speaks_plain`]).
fn handshake_failure(err: &io::Error, first: Option<u8>) -> String {
    // A TLS port closes a connection over its limits before the handshake,
    // with nothing said (it cannot say `server_busy` in the clear).
    let closed = matches!(
        err.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
    );
    if first.is_none() && closed {
        return "the server closed the connection before the TLS handshake: it is at its connection limit, or this address at its own; try again later".into();
    }
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => "the server's certificate is not valid for this host name".into(),
        Some(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) => "the server's certificate is not signed by a CA this client trusts".into(),
        Some(err) => format!("the TLS handshake failed: {err}"),
        None => format!("the TLS handshake failed: {err}"),
    }
}

/// Checks a key whose chain no trusted CA signed against `known_hosts`.
fn check_known(server: &str, key: &Fingerprint, settings: &TlsSettings) -> Result<(), ClientError> {
    let hosts = KnownHosts::new(&settings.known_hosts);
    let file = hosts.path().display();
    let local = |err: io::Error| ClientError::local_from(file.to_string(), err);
    match hosts.check(server, key).map_err(local)? {
        Known::Same => return Ok(()),
        Known::Changed { recorded, line } => {
            return Err(ClientError::Identity(format!(
                "WARNING: THE KEY OF SERVER {server} HAS CHANGED!\n\
                 Someone could be eavesdropping on you right now (a man-in-the-middle attack), \
                 or the server's key was replaced.\n\
                 The key recorded for {server} is {recorded}\n\
                 The server now shows {key}\n\
                 The recorded key is on line {line} of {file}; if the change is expected \
                 (check with the server's operator: echo-server tls fingerprint), remove that line \
                 and connect again.\n\
                 Refused: the server's identity could not be verified"
            )));
        }
        Known::Unknown => {}
    }
    let interactive = io::stdin().is_terminal();
    let accepted = match settings.trust {
        Trust::AcceptNew => true,
        Trust::Ask if interactive => ask_trust(server, key).map_err(ClientError::from_question)?,
        Trust::Ask | Trust::Strict => {
            return Err(ClientError::Identity(format!(
                "the server {server} is not known: its key is {key}; check it with the server's \
                 operator (echo-server tls fingerprint), then connect with --trust accept-new, \
                 or add this line to {file}: {}",
                KnownHosts::line(server, key).trim_end()
            )));
        }
    };
    if !accepted {
        return Err(ClientError::Identity(format!(
            "{server}: not trusted; nothing was sent"
        )));
    }
    hosts.add(server, key).map_err(local)?;
    eprintln!("echo-client: added {server} ({key}) to the known servers ({file})");
    Ok(())
}

/// Shows the key and asks `Trust this server? [y/N]`.
fn ask_trust(server: &str, key: &Fingerprint) -> io::Result<bool> {
    let mut out = io::stdout();
    writeln!(
        out,
        "The authenticity of server {server} can't be established.\n\
         Its key fingerprint is {key}.\n\
         (Its operator can show it with: echo-server tls fingerprint)"
    )?;
    loop {
        write!(out, "Trust this server? [y/N] ")?;
        out.flush()?;
        let mut line = String::new();
        if io::stdin().lock().read_line(&mut line)? == 0 {
            writeln!(out)?;
            return Err(echo_prompt::cancelled());
        }
        match line.trim().to_lowercase().as_str() {
            "y" | "yes" => return Ok(true),
            "" | "n" | "no" => return Ok(false),
            _ => writeln!(out, "Answer y or n.")?,
        }
    }
}

/// The certificate check of one handshake: a trusted chain, or a key to
/// check against `known_hosts` once the handshake is over.
#[derive(Debug)]
struct Verifier {
    /// Chains signed by a trusted CA; `None` when the system has none.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// Only the CA of `--ca-file` counts.
    ca_only: bool,
    /// The key of an untrusted chain, left for `known_hosts`.
    untrusted_key: Mutex<Option<Fingerprint>>,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    fn new(ca_file: Option<&PathBuf>) -> Result<Self, ClientError> {
        let provider = echo_tls::provider();
        let roots = match ca_file {
            Some(path) => Some(Arc::new(ca_roots(path)?)),
            None => system_roots(),
        };
        let webpki = match roots {
            Some(roots) => Some(
                WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                    .build()
                    .map_err(|err| ClientError::usage_from("cannot use the CA", err))?,
            ),
            None => None,
        };
        Ok(Self {
            webpki,
            ca_only: ca_file.is_some(),
            untrusted_key: Mutex::new(None),
            provider,
        })
    }
}

/// The certificates of `--ca-file`.
fn ca_roots(path: &PathBuf) -> Result<RootCertStore, ClientError> {
    let usage = |err: crate::error::Source| ClientError::usage_from("--ca-file", err);
    let pem = std::fs::read(path)
        .map_err(|err| ClientError::usage_from(format!("--ca-file: {}", path.display()), err))?;
    let certs = echo_tls::chain_from_pem(&pem, &path.display().to_string())
        .map_err(|err| usage(err.into()))?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|err| usage(err.into()))?;
    }
    Ok(roots)
}

/// The system's trusted roots, read once; `None` when there are none.
fn system_roots() -> Option<Arc<RootCertStore>> {
    static ROOTS: OnceLock<Option<Arc<RootCertStore>>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            (added > 0).then(|| Arc::new(roots))
        })
        .clone()
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = match &self.webpki {
            Some(webpki) => webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        };
        match chain {
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
                if !self.ca_only =>
            {
                let key = Fingerprint::of(end_entity).map_err(|_| {
                    rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
                })?;
                *lock(&self.untrusted_key) = Some(key);
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_closed_before_the_handshake_reads_as_a_refusal() {
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert!(handshake_failure(&eof, None).contains("connection limit"));
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(handshake_failure(&reset, None).contains("try again later"));
        assert!(speaks_plain(Some(0)));
        assert!(!speaks_plain(Some(22)) && !speaks_plain(None));
    }
}
