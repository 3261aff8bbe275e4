//! Where to connect and where to keep things: flags, environment, the
//! config file, prompts on a terminal, defaults, in that order.

use std::{
    io,
    path::{Path, PathBuf},
};

use clap::Args;
use serde::Deserialize;

use crate::{
    ClientError, TokenJar,
    tls::{TlsSettings, Trust},
};

pub use echo_proto::{DEFAULT_HOST, DEFAULT_PORT};

/// Flags of `echo-client`.
#[derive(Debug, Default, Clone, Args)]
pub struct ClientArgs {
    /// Server host name or address [default: 127.0.0.1]
    #[arg(long, env = "ECHO_CLIENT_HOST")]
    pub host: Option<String>,
    /// Server port [default: 13131]
    #[arg(long, env = "ECHO_CLIENT_PORT")]
    pub port: Option<u16>,
    /// TOML config file (see config/client.toml)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where session tokens are kept [default: $XDG_STATE_HOME/echo-client/tokens.json]
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// User name (pipe mode; the name to give in identification mode)
    #[arg(long, env = "ECHO_USER")]
    pub user: Option<String>,
    /// Pipe mode: register the user instead of logging in
    #[arg(long)]
    pub register: bool,
    /// Speak TLS to the server [default: off]
    #[arg(long, env = "ECHO_CLIENT_TLS", value_parser = clap::builder::BoolishValueParser::new())]
    pub tls: bool,
    /// Trust only the CA in FILE (PEM), with the host name checked [default: the system's roots, then known_hosts]
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The servers' keys met before [default: known_hosts next to the token file]
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// A key not in known_hosts: ask, accept-new (record it) or strict (refuse) [default: ask on a terminal, strict in pipe and one-shot mode]
    #[arg(long, value_name = "POLICY", value_parser = parse_trust)]
    pub trust: Option<Trust>,
}

fn parse_trust(text: &str) -> Result<Trust, String> {
    match text {
        "ask" => Ok(Trust::Ask),
        "accept-new" => Ok(Trust::AcceptNew),
        "strict" => Ok(Trust::Strict),
        _ => Err(format!(
            "unknown trust policy {text:?}: use ask, accept-new or strict"
        )),
    }
}

/// The config file. Every key is optional; unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    host: Option<String>,
    port: Option<u16>,
    token_file: Option<PathBuf>,
    history_file: Option<PathBuf>,
    tls: Option<bool>,
    ca_file: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    trust: Option<String>,
}

/// Everything resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// The token jar's file.
    pub token_file: PathBuf,
    /// The REPL's history file.
    pub history_file: PathBuf,
    /// TLS, when on.
    pub tls: Option<TlsSettings>,
}

/// Asks for a value on a terminal; `None` when there is no terminal.
pub type Ask<'a, T> = &'a mut dyn FnMut(&T) -> io::Result<Option<T>>;

impl ClientConfig {
    /// Merges the sources. `ask_host` / `ask_port` are called only when no
    /// source named the value. `default_trust` is for keys not in
    /// `known_hosts` when no source names a policy.
    pub fn resolve(
        args: &ClientArgs,
        file: FileConfig,
        ask_host: Ask<'_, String>,
        ask_port: Ask<'_, u16>,
        default_trust: Trust,
    ) -> Result<Self, ClientError> {
        let asked = ClientError::from_question;
        let host = match args.host.clone().or(file.host) {
            Some(host) => echo_prompt::parse_host(&host).map_err(ClientError::Usage)?,
            None => ask_host(&DEFAULT_HOST.to_owned())
                .map_err(asked)?
                .unwrap_or_else(|| DEFAULT_HOST.to_owned()),
        };
        let port = match args.port.or(file.port) {
            Some(0) => return Err(ClientError::Usage("port 0 is not a server port".into())),
            Some(port) => port,
            None => ask_port(&DEFAULT_PORT)
                .map_err(asked)?
                .unwrap_or(DEFAULT_PORT),
        };
        let state = crate::jar::state_dir().unwrap_or_else(|| PathBuf::from("."));
        let token_file = args
            .token_file
            .clone()
            .or(file.token_file)
            .or_else(TokenJar::default_path)
            .unwrap_or_else(|| state.join("tokens.json"));
        let history_file = file.history_file.unwrap_or_else(|| state.join("history"));
        let trust = match (args.trust, file.trust) {
            (Some(trust), _) => trust,
            (None, Some(text)) => parse_trust(&text).map_err(ClientError::Usage)?,
            (None, None) => default_trust,
        };
        let tls = (args.tls || file.tls.unwrap_or(false)).then(|| TlsSettings {
            ca_file: args.ca_file.clone().or(file.ca_file),
            known_hosts: args
                .known_hosts
                .clone()
                .or(file.known_hosts)
                .unwrap_or_else(|| {
                    token_file
                        .parent()
                        .unwrap_or_else(|| Path::new("."))
                        .join("known_hosts")
                }),
            trust,
        });
        Ok(Self {
            host,
            port,
            token_file,
            history_file,
            tls,
        })
    }
}

impl FileConfig {
    /// Reads and parses a config file; errors name the file.
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            ClientError::usage_from(format!("cannot read config file {}", path.display()), err)
        })?;
        toml::from_str(&text).map_err(|err| {
            ClientError::usage_from(format!("invalid config file {}", path.display()), err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/client.toml");

    #[test]
    fn the_example_config_parses_to_the_defaults_and_documents_every_key() {
        let file = FileConfig::load(Path::new(EXAMPLE)).unwrap();
        let config = ClientConfig::resolve(
            &ClientArgs::default(),
            file,
            &mut |_| panic!("the example names a host"),
            &mut |_| panic!("the example names a port"),
            Trust::Strict,
        )
        .unwrap();
        assert_eq!(
            (config.host.as_str(), config.port),
            (DEFAULT_HOST, DEFAULT_PORT)
        );
        let text = std::fs::read_to_string(EXAMPLE).unwrap();
        let err = toml::from_str::<FileConfig>("no_such_key = 1")
            .unwrap_err()
            .to_string();
        let listed = err.split("expected one of").nth(1).unwrap().to_owned();
        for key in listed.split('`').skip(1).step_by(2) {
            let set = format!("\n{key} = ");
            let commented = format!("\n# {key} = ");
            assert!(
                text.contains(&set) || text.contains(&commented),
                "client.toml lacks {key}"
            );
        }
    }

    #[test]
    fn flags_beat_the_file_and_bad_hosts_are_refused() {
        let file: FileConfig = toml::from_str("host = \"example.org\"\nport = 1000\n").unwrap();
        let args = ClientArgs {
            port: Some(2000),
            ..ClientArgs::default()
        };
        let config = ClientConfig::resolve(
            &args,
            file,
            &mut |_| Ok(None),
            &mut |_| Ok(None),
            Trust::Ask,
        )
        .unwrap();
        assert_eq!((config.host.as_str(), config.port), ("example.org", 2000));
        let bad = ClientArgs {
            host: Some("not a host".into()),
            ..ClientArgs::default()
        };
        let err = ClientConfig::resolve(
            &bad,
            FileConfig::default(),
            &mut |_| Ok(None),
            &mut |_| Ok(None),
            Trust::Ask,
        );
        assert!(matches!(err, Err(ClientError::Usage(_))));
    }
}
