//! Where the server listens ([`Listen`]) and whether it speaks TLS there
//! ([`Tls`]).

use std::{io, path::PathBuf};

use ipnet::IpNet;

use super::{ConfigError, DEFAULT_HOST, DEFAULT_PORT, FileConfig, RunArgs, pick};

/// The listening address, and who may open a connection with a PROXY
/// header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Address to listen on.
    pub host: String,
    /// Port to try first; 0 lets the OS pick any free port.
    pub port: u16,
    /// How many ports after `port` to try when it is busy.
    pub port_search: u16,
    /// Balancers whose connections start with a PROXY header.
    pub proxy_protocol_from: Vec<IpNet>,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            host: DEFAULT_HOST.to_owned(),
            port: DEFAULT_PORT,
            port_search: 100,
            proxy_protocol_from: Vec::new(),
        }
    }
}

impl Listen {
    /// From the flags, else the file; the port, when neither names it, from
    /// `ask_port`, else the default.
    pub(super) fn resolve(
        args: &RunArgs,
        file: &FileConfig,
        ask_port: impl FnOnce(u16) -> io::Result<Option<u16>>,
    ) -> Result<Self, ConfigError> {
        let d = Self::default();
        let port = match args.port.or(file.port) {
            Some(port) => port,
            None => ask_port(d.port)
                .map_err(|err| ConfigError::Invalid(format!("cannot read the port: {err}")))?
                .unwrap_or(d.port),
        };
        // Balancers given as flags replace the file's list.
        let flagged = Some(args.proxy_protocol_from.clone()).filter(|from| !from.is_empty());
        Ok(Self {
            host: pick(args.host.clone(), file.host.clone(), d.host),
            port,
            port_search: file.port_search.unwrap_or(d.port_search),
            proxy_protocol_from: pick(
                flagged,
                file.proxy_protocol_from.clone(),
                d.proxy_protocol_from,
            ),
        })
    }
}

/// TLS on the listening port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// Whether the port speaks TLS.
    pub enabled: bool,
    /// The certificate chain and key files (PEM); `None`: the generated
    /// pair in `DATA_DIR/tls/`.
    pub files: Option<(PathBuf, PathBuf)>,
}

impl Tls {
    /// On if the flag or the file says so; the certificate and key files
    /// given both or neither.
    pub(super) fn resolve(args: &RunArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let cert = args.tls_cert.clone().or(file.tls_cert.clone());
        let key = args.tls_key.clone().or(file.tls_key.clone());
        let files = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid(
                    "tls_cert and tls_key go together: give both or neither".into(),
                ));
            }
        };
        Ok(Self {
            enabled: args.tls || file.tls.unwrap_or(Self::default().enabled),
            files,
        })
    }
}
