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
    _config: tempfile::TempDir,
}

impl Cluster {
    pub fn start(pg: &Postgres, n: usize, config: &str) -> Self {
        let url = pg.url();
        let config_dir = tempfile::tempdir().unwrap();
        let config_file = config_dir.path().join("server.toml");
        std::fs::write(&config_file, config).unwrap();
        let config_file = config_file.display().to_string();
        let servers = (0..n)
            .map(|_| {
                let dir = tempfile::tempdir().unwrap();
                let args = [
                    "--port",
                    "0",
                    "--mode",
                    "auth",
                    "--store",
                    &url,
                    "--config",
                    &config_file,
                ];
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
            _config: config_dir,
        }
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
