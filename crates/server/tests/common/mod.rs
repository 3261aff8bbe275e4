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
use echo_server::ServerConfig;
use tokio::{net::TcpStream, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// A server running in this test's runtime on `127.0.0.1:0`.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(echo_server::run(config, listener, shutdown.clone()));
        Self {
            addr,
            shutdown,
            task,
        }
    }

    /// Connects and reads the `hello`.
    pub async fn connect(&self) -> TestClient {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let mut client = TestClient { stream };
        assert!(matches!(
            client.recv().await,
            ServerMsg::Hello { proto: 1, .. }
        ));
        client
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

/// A config for tests: auth mode, nothing written outside temp dirs.
pub fn test_config() -> ServerConfig {
    ServerConfig {
        data_dir: std::env::temp_dir().join("echo-server-tests-unused"),
        ..ServerConfig::default()
    }
}

/// A protocol client made of the proto crate's extension traits.
pub struct TestClient {
    pub stream: TcpStream,
}

impl TestClient {
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

    /// The next frame, or `None` once the server has closed.
    pub async fn try_recv(&mut self) -> Option<ServerMsg> {
        self.stream.recv_msg::<ServerMsg>().await.ok().flatten()
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
        let mut command = Command::new(env!("CARGO_BIN_EXE_echo-server"));
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

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
