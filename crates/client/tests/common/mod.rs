//! Helpers shared by the client's end-to-end tests: a real server on its own
//! thread, and the client binary run in pipe mode.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use echo_proto::Mode;
use echo_server::{Server, ServerConfig, store::FileStore};
use tokio_util::sync::CancellationToken;

pub const PASSWORD: &str = "correct horse battery";
pub const CLIENT: &str = env!("CARGO_BIN_EXE_echo-client");

/// A server on its own thread and runtime, with its store in a temp dir.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    _data: tempfile::TempDir,
}

impl TestServer {
    pub fn start(mode: Mode) -> Self {
        Self::start_on(mode, tempfile::tempdir().unwrap(), "127.0.0.1:0")
    }

    /// Stops this server and starts another on the same port and store.
    pub fn restart(mut self, mode: Mode) -> Self {
        let addr = self.addr;
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        let data = std::mem::replace(&mut self._data, tempfile::tempdir().unwrap());
        Self::start_on(mode, data, &addr.to_string())
    }

    fn start_on(mode: Mode, data: tempfile::TempDir, bind: &str) -> Self {
        let config = ServerConfig {
            mode,
            ..ServerConfig::default()
        };
        Self::start_config(config, data, bind)
    }

    /// A server with `config` (its attempt limit raised for tests).
    pub fn start_with(config: ServerConfig) -> Self {
        Self::start_config(config, tempfile::tempdir().unwrap(), "127.0.0.1:0")
    }

    fn start_config(mut config: ServerConfig, data: tempfile::TempDir, bind: &str) -> Self {
        config.auth.attempts_per_minute = 10_000;
        let store = FileStore::open(data.path(), config.lifetimes()).unwrap();
        let listener = std::net::TcpListener::bind(bind).unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                Server::new(config, store)
                    .serve(listener, token)
                    .await
                    .unwrap();
            });
        });
        Self {
            addr,
            shutdown,
            thread: Some(thread),
            _data: data,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs the client in pipe mode with `input` on standard input.
pub fn pipe(
    server: &TestServer,
    tokens: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    input: &str,
) -> Output {
    let mut command = Command::new(CLIENT);
    command
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &server.addr.port().to_string(),
        ])
        .arg("--token-file")
        .arg(tokens)
        .args(args)
        .env_remove("ECHO_USER")
        .env_remove("ECHO_PASSWORD")
        .env_remove("ECHO_CLIENT_HOST")
        .env_remove("ECHO_CLIENT_PORT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn token_file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state/tokens.json")
}
