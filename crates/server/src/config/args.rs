//! The command line of `echo-server`: its flags (clap), merged with the
//! environment by clap and with the config file by [`super::ServerConfig::resolve`].

use std::path::PathBuf;

use clap::Args;
use echo_proto::Mode;
use ipnet::IpNet;

use crate::ops::logging::LogFormat;

/// Flags of `echo-server` (and of `echo-server run`).
#[derive(Debug, Default, Clone, Args)]
pub struct RunArgs {
    /// Address to listen on [default: 127.0.0.1]
    #[arg(long, env = "ECHO_SERVER_HOST")]
    pub host: Option<String>,
    /// Port to try first; if busy, the next free one is used [default: 13131]. With an admin command: the server (of --data-dir) to ask
    #[arg(long, env = "ECHO_SERVER_PORT", global = true)]
    pub port: Option<u16>,
    /// TOML config file (see config/server.toml)
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// `ident` (identify clients by IP) or `auth` (passwords and tokens) [default: auth]
    #[arg(long, value_parser = parse_mode)]
    pub mode: Option<Mode>,
    /// Directory of the file store, the TLS pair and the control socket [default: data]
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Where users and sessions live: `file` (the journal in --data-dir) or postgres://USER@HOST:PORT/DB?sslmode=disable|prefer|require (password in the URL or PGPASSWORD; several hosts HOST:PORT,HOST:PORT or libpq's host=H1,H2 port=P1,P2 ...: the writable primary among them) [default: file]
    #[arg(
        long,
        value_name = "URL",
        global = true,
        env = "ECHO_SERVER_STORE",
        hide_env_values = true
    )]
    pub store: Option<String>,
    /// Seconds one call to the PostgreSQL store may take; past it the call fails as `unavailable` and /healthz says the store is down [default: 5]
    #[arg(long, value_name = "SECONDS")]
    pub store_timeout: Option<u64>,
    /// Directory of the rotating log files [default: logs]
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// `text` or `json` (one JSON object per line, for log shippers) [default: text]
    #[arg(long, value_name = "FORMAT", value_parser = parse_log_format)]
    pub log_format: Option<LogFormat>,
    /// Connections served at once; more are refused with server_busy [default: 1024]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Connections one address (IPv6: one /64) may hold; more are refused with too_many_connections [default: 256]
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Connections from one address still in the handshake at once [default: 32]
    #[arg(long, value_name = "N")]
    pub max_handshakes_per_ip: Option<usize>,
    /// Seconds a client has to identify or authenticate [default: 30]
    #[arg(long, value_name = "SECONDS")]
    pub handshake_timeout: Option<u64>,
    /// Seconds a client on a TLS port has to finish the TLS handshake [default: 10]
    #[arg(long, value_name = "SECONDS")]
    pub tls_handshake_timeout: Option<u64>,
    /// Seconds an established session may stay silent [default: 300]
    #[arg(long, value_name = "SECONDS")]
    pub idle_timeout: Option<u64>,
    /// Seconds shutdown waits for connections to close [default: 5]
    #[arg(long, value_name = "SECONDS")]
    pub drain_timeout: Option<u64>,
    /// Detach from the terminal once listening
    #[arg(long)]
    pub daemon: bool,
    /// Write the process id to FILE
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Serve Prometheus metrics (GET /metrics) and a health check (GET /healthz) over HTTP on HOST:PORT [default: off]
    #[arg(long, value_name = "HOST:PORT", env = "ECHO_SERVER_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Seconds a metrics-port connection has to send each request head; idle keep-alive connections are closed after it [default: 5]
    #[arg(long, value_name = "SECONDS")]
    pub metrics_idle_timeout: Option<u64>,
    /// A balancer (CIDR, e.g. 127.0.0.1/32) whose connections start with a PROXY protocol header (v1 or v2); repeat for several [default: none]
    #[arg(long, value_name = "CIDR")]
    pub proxy_protocol_from: Vec<IpNet>,
    /// Speak TLS on the listening port (1.3 and 1.2) [default: off]
    #[arg(long, env = "ECHO_SERVER_TLS", value_parser = clap::builder::BoolishValueParser::new())]
    pub tls: bool,
    /// The certificate chain (PEM) [default: DATA_DIR/tls/cert.pem, made self-signed on first start]
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM) [default: DATA_DIR/tls/key.pem]
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_key: Option<PathBuf>,
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("unknown log format {text:?}: use text or json")),
    }
}

fn parse_mode(text: &str) -> Result<Mode, String> {
    match text {
        "ident" => Ok(Mode::Ident),
        "auth" => Ok(Mode::Auth),
        _ => Err(format!("unknown mode {text:?}: use ident or auth")),
    }
}
