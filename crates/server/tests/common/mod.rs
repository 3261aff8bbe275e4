//! Helpers shared by the server's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
    time::Duration,
};

use echo_proto::{
    ClientMsg, ServerMsg,
    ext::{AsyncFrameRead, AsyncFrameWrite},
};
use echo_server::{Server, ServerConfig, clock::Clock, store::FileStore};
use tokio::{net::TcpStream, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// A server running in this test's runtime on `127.0.0.1:0`, with a file
/// store in a temporary directory.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
    pub store: FileStore,
    pub data: tempfile::TempDir,
}

/// A clock the test moves by hand.
#[derive(Debug, Default)]
pub struct ManualClock(pub std::sync::atomic::AtomicU64);

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl ManualClock {
    pub fn at(now: u64) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self(now.into()))
    }

    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, std::sync::atomic::Ordering::SeqCst);
    }
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> Self {
        Self::start_with_clock(config, None).await
    }

    pub async fn start_with_clock(
        config: ServerConfig,
        clock: Option<std::sync::Arc<dyn Clock>>,
    ) -> Self {
        let data = tempfile::tempdir().unwrap();
        let store = FileStore::open(data.path(), config.lifetimes()).unwrap();
        Self::start_on(config, store, data, clock).await
    }

    pub async fn start_on(
        config: ServerConfig,
        store: FileStore,
        data: tempfile::TempDir,
        clock: Option<std::sync::Arc<dyn Clock>>,
    ) -> Self {
        let control = echo_server::control::bind(data.path()).unwrap();
        let mut server = Server::new(config, store.clone()).with_control_socket(control);
        if let Some(clock) = clock {
            server = server.with_clock(clock);
        }
        Self::serve(server, store, data).await
    }

    /// A server that also serves `/metrics` and `/healthz`; returns the
    /// address of that port too.
    pub async fn start_with_metrics(config: ServerConfig) -> (Self, SocketAddr) {
        let data = tempfile::tempdir().unwrap();
        let store = FileStore::open(data.path(), config.lifetimes()).unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http.local_addr().unwrap();
        let server = Server::new(config, store.clone())
            .with_metrics_listener(http)
            .with_control_socket(echo_server::control::bind(data.path()).unwrap());
        (Self::serve(server, store, data).await, http_addr)
    }

    async fn serve(server: Server<FileStore>, store: FileStore, data: tempfile::TempDir) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move { server.serve(listener, token).await.unwrap() });
        Self {
            addr,
            shutdown,
            task,
            store,
            data,
        }
    }

    /// Connects in authentication mode, sends `msg` and expects `welcome`;
    /// returns the client and its token.
    pub async fn welcomed(&self, msg: ClientMsg) -> (TestClient, echo_proto::Secret) {
        let mut client = self.connect_raw().await;
        assert!(matches!(client.recv().await, ServerMsg::AskAuth { .. }));
        client.send(&msg).await;
        match client.recv().await {
            ServerMsg::Welcome { token, .. } => (client, token),
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    /// Connects and reads the `hello` (nothing more).
    pub async fn connect_raw(&self) -> TestClient {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        TestClient::after_hello(stream).await
    }

    /// Connects from `source` (any 127.x.y.z address) and reads the `hello`.
    pub async fn connect_from(&self, source: &str) -> TestClient {
        TestClient::after_hello(connect_from(source, self.addr).await).await
    }

    /// An identification-mode server with `handshake_timeout`, and a client
    /// that has just been asked for its name (and has not answered).
    pub async fn asked_for_a_name(handshake_timeout: Duration) -> (Self, TestClient) {
        let mut config = test_config();
        config.timeouts.handshake = handshake_timeout;
        let server = Self::start(config).await;
        let mut client = server.connect_raw().await;
        assert_eq!(client.recv().await, ServerMsg::AskName {});
        (server, client)
    }

    /// Connects in identification mode and gets through to the conversation.
    pub async fn connect(&self) -> TestClient {
        let mut client = self.connect_raw().await;
        client.identify("tester").await;
        client
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

/// A config for tests: identification mode, so a connection goes straight
/// to the conversation once it has a name.
pub fn test_config() -> ServerConfig {
    ServerConfig {
        mode: echo_proto::Mode::Ident,
        ..ServerConfig::default()
    }
}

/// A config for authentication tests.
pub fn auth_config() -> ServerConfig {
    let mut config = ServerConfig {
        mode: echo_proto::Mode::Auth,
        ..ServerConfig::default()
    };
    config.auth.attempts_per_minute = 10_000;
    config
}

/// Everything the server logged in `dir/logs`.
pub fn read_logs(dir: &Path) -> String {
    let mut log = String::new();
    for entry in std::fs::read_dir(dir.join("logs")).unwrap() {
        let entry = entry.unwrap();
        // log_serv.txt is a link to one of the daily files.
        if entry.file_type().unwrap().is_symlink() {
            continue;
        }
        log.push_str(&std::fs::read_to_string(entry.path()).unwrap());
    }
    log
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A protocol client made of the proto crate's extension traits.
pub struct TestClient {
    pub stream: TcpStream,
}

impl TestClient {
    pub async fn after_hello(stream: TcpStream) -> Self {
        let mut client = Self { stream };
        assert!(matches!(
            client.recv().await,
            ServerMsg::Hello { proto: 1, .. }
        ));
        client
    }

    pub async fn send(&mut self, msg: &ClientMsg) {
        self.stream.send_msg(msg).await.unwrap();
    }

    pub async fn recv(&mut self) -> ServerMsg {
        self.stream
            .recv_msg::<ServerMsg>()
            .await
            .unwrap()
            .expect("server closed the connection")
    }

    /// Reads until `bye`, for at most a second: its reason, or `None`.
    pub async fn bye_within_a_second(&mut self) -> Option<echo_proto::ByeReason> {
        let wait = async {
            loop {
                match self.try_recv().await {
                    Some(ServerMsg::Bye { reason }) => return Some(reason),
                    Some(_) => {}
                    None => return None,
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(1), wait)
            .await
            .ok()
            .flatten()
    }

    /// The next frame, or `None` once the server has closed.
    pub async fn try_recv(&mut self) -> Option<ServerMsg> {
        self.stream.recv_msg::<ServerMsg>().await.ok().flatten()
    }

    /// Answers `ask_name` (or takes the `greet` of a known address).
    pub async fn identify(&mut self, name: &str) -> (String, bool) {
        match self.recv().await {
            ServerMsg::AskName {} => {
                self.send(&ClientMsg::Name {
                    name: name.to_owned(),
                })
                .await;
                match self.recv().await {
                    ServerMsg::Greet { name, known } => (name, known),
                    other => panic!("expected greet, got {other:?}"),
                }
            }
            ServerMsg::Greet { name, known } => (name, known),
            other => panic!("expected ask_name or greet, got {other:?}"),
        }
    }

    pub async fn say(&mut self, id: u64, text: &str) {
        self.send(&ClientMsg::Say {
            id,
            text: text.to_owned(),
        })
        .await;
    }

    /// Sends `say` and collects the replies up to the one marked last.
    pub async fn ask(&mut self, id: u64, text: &str) -> Vec<String> {
        self.say(id, text).await;
        let mut texts = Vec::new();
        loop {
            match self.recv().await {
                ServerMsg::Reply { re, text, last } => {
                    assert_eq!(re, id);
                    texts.push(text);
                    if last {
                        return texts;
                    }
                }
                other => panic!("expected a reply, got {other:?}"),
            }
        }
    }
}

/// The `echo-server` binary running as a child process.
pub struct ServerProcess {
    pub child: Child,
    pub stdout: BufReader<ChildStdout>,
    pub first_line: String,
}

impl ServerProcess {
    /// Starts the binary with `args` (plus `--log-dir` and `--data-dir` in
    /// `dir`) and reads its first line of output.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_command(
            Command::new(env!("CARGO_BIN_EXE_echo-server")),
            dir,
            args,
            env,
        )
    }

    /// Like [`ServerProcess::start`], with `command` (which runs the server,
    /// possibly through a wrapper such as `prlimit`).
    pub fn start_command(
        mut command: Command,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        command
            .args(args)
            .arg("--log-dir")
            .arg(dir.join("logs"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env_remove("ECHO_SERVER_HOST")
            .env_remove("ECHO_SERVER_PORT")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first_line = String::new();
        stdout.read_line(&mut first_line).unwrap();
        Self {
            child,
            stdout,
            first_line: first_line.trim_end().to_owned(),
        }
    }

    /// The address from the `listening on HOST:PORT` line.
    pub fn addr(&self) -> SocketAddr {
        let rest = self.first_line.strip_prefix("listening on ").unwrap();
        rest.split(' ').next().unwrap().parse().unwrap()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Waits for the process to exit, failing the test after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` with `stdin` on its standard input; its output.
pub fn run_with_stdin(mut command: Command, stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A TCP connection to `addr` from `source` (any 127.0.0.0/8 address).
pub async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects with a blocking socket (10 s read timeout) and reads `hello`.
pub fn connect_blocking(addr: SocketAddr) -> std::net::TcpStream {
    use echo_proto::ext::BlockingFrameRead;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(matches!(
        stream.recv_msg::<ServerMsg>().unwrap(),
        Some(ServerMsg::Hello { .. })
    ));
    stream
}

/// Identification mode, blocking: answers `ask_name` with `name` if asked,
/// until `greet`.
pub fn identify_blocking(stream: &mut std::net::TcpStream, name: &str) {
    use echo_proto::ext::{BlockingFrameRead, BlockingFrameWrite};
    loop {
        match stream.recv_msg::<ServerMsg>().unwrap() {
            Some(ServerMsg::AskName {}) => {
                stream
                    .send_msg(&ClientMsg::Name {
                        name: name.to_owned(),
                    })
                    .unwrap();
            }
            Some(ServerMsg::Greet { .. }) => return,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// xorshift64*: reproducible noise without another dependency.
pub fn noise(seed: &mut u64) -> u64 {
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
}
pub mod cluster;
pub mod haproxy;
pub mod postgres;
