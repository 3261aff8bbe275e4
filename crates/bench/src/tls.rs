//! TLS for the benchmark: one self-signed pair for both servers (the real
//! one and the reference TLS echo, same rustls provider), a client that
//! trusts exactly that certificate, and the handshake rate.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use echo_tls::rustls::{self, RootCertStore, client::Resumption};
use serde::Serialize;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use echo_proto::ext::AsyncFrameRead;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{load::Target, spread::Spread};

/// The certificate and key files both servers are given.
#[derive(Debug, Clone)]
pub struct BenchTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Handshakes per second, each target's median (min-max) over the
/// repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct HandshakeResult {
    pub workers: usize,
    pub full_real: Spread,
    pub full_reference: Spread,
    pub resumed_real: Spread,
    pub resumed_reference: Spread,
    /// Share of the "resumed" handshakes that did resume, lowest seen.
    pub resumed_share: f64,
}

impl BenchTls {
    /// A new pair for 127.0.0.1 in `dir`.
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        let (cert, key) = (dir.join("bench-cert.pem"), dir.join("bench-key.pem"));
        let pair = echo_tls::self_signed(&["127.0.0.1".into(), "localhost".into()])?;
        echo_tls::write_pair(&pair, &cert, &key)?;
        Ok(Self { cert, key })
    }

    /// The arguments that hand the pair to a child.
    pub fn args(&self) -> [String; 4] {
        [
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }

    /// A client that trusts this certificate only; `resume` keeps TLS
    /// sessions for the next connection (rustls's in-memory cache).
    pub fn connector(&self, resume: bool) -> anyhow::Result<TlsConnector> {
        let pem = std::fs::read(&self.cert)?;
        let mut roots = RootCertStore::empty();
        for cert in echo_tls::chain_from_pem(&pem, &self.cert.display().to_string())? {
            roots.add(cert)?;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(echo_tls::provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        if !resume {
            config.resumption = Resumption::disabled();
        }
        Ok(TlsConnector::from(Arc::new(config)))
    }
}

/// The reference's side: a server configuration for the pair.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let pair = echo_tls::load_pair(cert, key)?;
    Ok(TlsAcceptor::from(Arc::new(echo_tls::server_config(&pair)?)))
}

/// Completed TLS handshakes per second on `addr` by `workers` clients in
/// turn, for `duration`: each connects, finishes the handshake, takes its
/// first bytes (the real server's `hello`; one byte echoed by the
/// reference), which also brings the session tickets, and closes. Returns
/// the rate and the share of handshakes that resumed a session.
pub async fn handshake_rate(
    addr: SocketAddr,
    target: Target,
    connector: &TlsConnector,
    workers: usize,
    duration: Duration,
) -> anyhow::Result<(f64, f64)> {
    let end = Instant::now() + duration;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let connector = connector.clone();
            tokio::spawn(async move {
                let (mut done, mut resumed) = (0u64, 0u64);
                while Instant::now() < end {
                    let tcp = tokio::net::TcpStream::connect(addr).await?;
                    tcp.set_nodelay(true)?;
                    let name = echo_tls::pki_types::ServerName::IpAddress(addr.ip().into());
                    let mut conn = connector.connect(name, tcp).await?;
                    match target {
                        Target::Real => {
                            conn.recv_frame().await?.context("closed before hello")?;
                        }
                        Target::Reference => {
                            conn.write_all(b"x").await?;
                            conn.read_exact(&mut [0u8; 1]).await?;
                        }
                    }
                    done += 1;
                    let kind = conn.get_ref().1.handshake_kind();
                    resumed += u64::from(kind == Some(rustls::HandshakeKind::Resumed));
                }
                anyhow::Ok((done, resumed))
            })
        })
        .collect();
    let (mut total, mut resumed) = (0, 0);
    for task in tasks {
        let (done, kind) = task.await?.context("a TLS handshake failed")?;
        total += done;
        resumed += kind;
    }
    Ok((
        total as f64 / duration.as_secs_f64(),
        resumed as f64 / total.max(1) as f64,
    ))
}
