//! Several real `echo-server` processes on one throwaway PostgreSQL, and a
//! blocking client that speaks to them (`several_servers*.rs`).

use std::{
    net::{SocketAddr, TcpStream},
    process::Command,
    time::Duration,
};

use echo_proto::{
    ByeCause, ByeReason, ClientMsg, ErrorCode, Secret, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};

use crate::{ServerProcess, connect_blocking, postgres::Postgres};

/// Password attempts a minute per address, unless a test is about them:
/// every test here logs in many times from 127.0.0.1.
pub const UNLIMITED: &str = "auth_attempts_per_minute = 100000\n";

/// `n` servers on `pg` with the config file `config`, each in a directory
/// of its own.
pub struct Cluster {
    pub servers: Vec<(tempfile::TempDir, ServerProcess)>,
    pub url: String,
    /// The `/healthz` ports, with [`Cluster::start_at`] `watched`.
    pub health: Vec<u16>,
    _config: tempfile::TempDir,
}

impl Cluster {
    pub fn start(pg: &Postgres, n: usize, config: &str) -> Self {
        Self::start_at(&pg.url(), n, config, false)
    }

    /// `n` servers on the store `url` (several hosts, a relay...), each
    /// also serving `/healthz` (on [`Cluster::health`]) when `watched`.
    pub fn start_at(url: &str, n: usize, config: &str, watched: bool) -> Self {
        let url = url.to_owned();
        let config_dir = tempfile::tempdir().unwrap();
        let config_file = config_dir.path().join("server.toml");
        std::fs::write(&config_file, config).unwrap();
        let config_file = config_file.display().to_string();
        let mut health = Vec::new();
        let servers = (0..n)
            .map(|_| {
                let dir = tempfile::tempdir().unwrap();
                let mut args = vec![
                    "--port".to_owned(),
                    "0".into(),
                    "--mode".into(),
                    "auth".into(),
                    "--store".into(),
                    url.clone(),
                    "--config".into(),
                    config_file.clone(),
                ];
                if watched {
                    let port = crate::free_port();
                    health.push(port);
                    args.extend(["--metrics-addr".into(), format!("127.0.0.1:{port}")]);
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let server = ServerProcess::start(dir.path(), &args, &[]);
                assert!(
                    server.first_line.starts_with("listening on"),
                    "{}",
                    server.first_line
                );
                (dir, server)
            })
            .collect();
        Self {
            servers,
            url,
            health,
            _config: config_dir,
        }
    }

    /// What server `i`'s `/healthz` answers now: its status code (`None`
    /// when it does not answer at all).
    pub fn healthz(&self, i: usize) -> Option<u16> {
        crate::cluster_script::http_get(self.health[i], "/healthz").map(|(code, _)| code)
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.servers[i].1.addr()
    }

    /// `echo-server --store URL ARGS...`, with `stdin`; its output.
    pub fn admin(&self, args: &[&str], stdin: &str) -> std::process::Output {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(crate::server_binary());
        command
            .args(["--store", &self.url, "--data-dir"])
            .arg(dir.path())
            .args(args);
        crate::run_with_stdin(command, stdin)
    }
}

/// A blocking client past `hello` and `ask_auth`.
pub struct Client(pub TcpStream);

/// What an authentication request got.
#[derive(Debug)]
pub enum Answer {
    Welcome(Secret),
    Refused { code: ErrorCode, fatal: bool },
}

impl Answer {
    /// A new connection to `addr` asking `msg`: its answer, or `None`
    /// where the connection failed or broke (for load that runs through
    /// faults; nothing here panics).
    pub fn try_at(addr: SocketAddr, msg: &ClientMsg) -> Option<Self> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        stream.recv_msg::<ServerMsg>().ok()??;
        stream.recv_msg::<ServerMsg>().ok()??;
        stream.send_msg(msg).ok()?;
        match stream.recv_msg::<ServerMsg>().ok()?? {
            ServerMsg::Welcome { token, .. } => Some(Answer::Welcome(token)),
            ServerMsg::Error { code, fatal, .. } => Some(Answer::Refused { code, fatal }),
            _ => None,
        }
    }

    /// Fails the test unless this is a refusal with `code`.
    #[track_caller]
    pub fn assert_refused(&self, code: ErrorCode) {
        assert!(
            matches!(self, Answer::Refused { code: got, .. } if *got == code),
            "expected {code:?}, got {self:?}"
        );
    }
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        Self::over(connect_blocking(addr))
    }

    /// A client on `stream`, whose `hello` has been read.
    pub fn over(mut stream: TcpStream) -> Self {
        match stream.recv_msg::<ServerMsg>().unwrap() {
            Some(ServerMsg::AskAuth { .. }) => Self(stream),
            other => panic!("expected ask_auth, got {other:?}"),
        }
    }

    pub fn ask(&mut self, msg: &ClientMsg) -> Answer {
        self.0.send_msg(msg).unwrap();
        match self.0.recv_msg::<ServerMsg>().unwrap() {
            Some(ServerMsg::Welcome { token, .. }) => Answer::Welcome(token),
            Some(ServerMsg::Error { code, fatal, .. }) => Answer::Refused { code, fatal },
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn welcomed(addr: SocketAddr, msg: &ClientMsg) -> (Self, Secret) {
        let mut client = Self::connect(addr);
        match client.ask(msg) {
            Answer::Welcome(token) => (client, token),
            other => panic!("expected welcome to {msg:?}, got {other:?}"),
        }
    }

    pub fn echo(&mut self, text: &str) -> String {
        self.0
            .send_msg(&ClientMsg::Say {
                id: 1,
                text: text.into(),
            })
            .unwrap();
        match self.0.recv_msg::<ServerMsg>().unwrap() {
            Some(ServerMsg::Reply { text, .. }) => text,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// The `bye` reason the server sends within a second, if any.
    pub fn bye_within_a_second(&mut self) -> Option<ByeReason> {
        self.bye_and_cause_within_a_second()
            .map(|(reason, _)| reason)
    }

    /// The `bye` reason and cause the server sends within a second, if any.
    pub fn bye_and_cause_within_a_second(&mut self) -> Option<(ByeReason, Option<ByeCause>)> {
        self.0
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        match self.0.recv_msg::<ServerMsg>() {
            Ok(Some(ServerMsg::Bye { reason, cause, .. })) => Some((reason, cause)),
            _ => None,
        }
    }
}

/// Connects to `addr` from the loopback address `source` (any of
/// 127.0.0.0/8), reads `hello`, and sets a 10 s read timeout.
pub fn dial_from(source: &str, addr: SocketAddr) -> TcpStream {
    try_dial_from(source, addr).unwrap_or_else(|| panic!("no hello from {addr}"))
}

/// [`dial_from`], or `None` when the connection is refused or closed
/// before `hello` (a balancer that found no live server).
pub fn try_dial_from(source: &str, addr: SocketAddr) -> Option<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    let local: SocketAddr = format!("{source}:0").parse().ok()?;
    socket.bind(&local.into()).ok()?;
    socket.connect(&addr.into()).ok()?;
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    match stream.recv_msg::<ServerMsg>() {
        Ok(Some(ServerMsg::Hello { .. })) => Some(stream),
        _ => None,
    }
}
