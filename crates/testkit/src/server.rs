//! The in-process server: [`TestServer`] runs the library's `Server` on
//! `127.0.0.1:0` with a SQLite store in a temporary directory, either in the
//! test's own runtime ([`TestServer::start`], for `#[tokio::test]`s) or on a
//! thread and runtime of its own ([`TestServer::start_blocking`], for plain
//! `#[test]`s that run a client binary against it).

use std::{
    net::SocketAddr,
    sync::{Arc, mpsc},
    time::Duration,
};

use echo_proto::{ClientMsg, ServerMsg};
use echo_server::{
    Server, ServerConfig,
    clock::Clock,
    store::{SqliteStore, sqlite::DB_FILE},
};
use tokio::{net::TcpStream, task::JoinHandle};

use crate::{TestClient, connect_from};
use tokio_util::sync::CancellationToken;

/// A server running in this test's runtime on `127.0.0.1:0`, with a
/// SQLite store in a temporary directory.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
    pub store: SqliteStore,
    pub data: tempfile::TempDir,
    /// With [`TestServer::start_blocking`]: the thread whose runtime runs
    /// the server; dropping it stops the server and joins the thread.
    background: Option<Background>,
}

/// The thread of a [`TestServer::start_blocking`] server.
struct Background {
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> Self {
        Self::start_with_clock(config, None).await
    }

    pub async fn start_with_clock(config: ServerConfig, clock: Option<Arc<dyn Clock>>) -> Self {
        let data = tempfile::tempdir().unwrap();
        let store = open_store(data.path(), &config).await;
        Self::start_on(config, store, data, clock).await
    }

    pub async fn start_on(
        config: ServerConfig,
        store: SqliteStore,
        data: tempfile::TempDir,
        clock: Option<Arc<dyn Clock>>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let control = echo_server::control::bind(data.path(), port).unwrap();
        let mut server = Server::new(config, store.clone()).with_control_socket(control);
        if let Some(clock) = clock {
            server = server.with_clock(clock);
        }
        Self::serve_on(server, listener, store, data)
    }

    /// A server whose control socket is in `dir` (its store in a directory
    /// of its own): several of them share `dir` as servers of one
    /// PostgreSQL database share a data directory.
    pub async fn start_with_control_in(config: ServerConfig, dir: &std::path::Path) -> Self {
        let data = tempfile::tempdir().unwrap();
        let store = open_store(data.path(), &config).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let control = echo_server::control::bind(dir, port).unwrap();
        let server = Server::new(config, store.clone()).with_control_socket(control);
        Self::serve_on(server, listener, store, data)
    }

    /// A server that also serves `/metrics` and `/healthz`; returns the
    /// address of that port too.
    pub async fn start_with_metrics(config: ServerConfig) -> (Self, SocketAddr) {
        let data = tempfile::tempdir().unwrap();
        let store = open_store(data.path(), &config).await;
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http.local_addr().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = Server::new(config, store.clone())
            .with_metrics_listener(http)
            .with_control_socket(echo_server::control::bind(data.path(), port).unwrap());
        (Self::serve_on(server, listener, store, data), http_addr)
    }

    fn serve_on(
        server: Server<SqliteStore>,
        listener: tokio::net::TcpListener,
        store: SqliteStore,
        data: tempfile::TempDir,
    ) -> Self {
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
            background: None,
        }
    }

    /// A server on a thread and runtime of its own, for tests without a
    /// runtime (they run a client binary against it); stopped when dropped.
    pub fn start_blocking(config: ServerConfig) -> Self {
        Self::start_blocking_on(config, tempfile::tempdir().unwrap(), "127.0.0.1:0")
    }

    /// Stops this [`TestServer::start_blocking`] server and starts another
    /// with `config` on the same port and data.
    pub fn restart_blocking(self, config: ServerConfig) -> Self {
        let Self {
            addr,
            store,
            data,
            background,
            ..
        } = self;
        drop(background);
        drop(store);
        Self::start_blocking_on(config, data, &addr.to_string())
    }

    fn start_blocking_on(config: ServerConfig, data: tempfile::TempDir, bind: &str) -> Self {
        let listener = std::net::TcpListener::bind(bind).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let control = echo_server::control::bind(data.path(), addr.port()).unwrap();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let (started, rx) = mpsc::channel();
        let dir = data.path().to_owned();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let store = open_store(&dir, &config).await;
                let server = Server::new(config, store.clone()).with_control_socket(control);
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let (done, finished) = tokio::sync::oneshot::channel::<()>();
                let task = tokio::spawn(async move {
                    let outcome = server.serve(listener, token).await;
                    let _ = done.send(());
                    outcome.unwrap()
                });
                started.send((task, store)).unwrap();
                // The runtime lives until the server has drained (or failed).
                let _ = finished.await;
            });
        });
        let (task, store) = rx.recv().unwrap();
        Self {
            addr,
            shutdown: shutdown.clone(),
            task,
            store,
            data,
            background: Some(Background {
                shutdown,
                thread: Some(thread),
            }),
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

/// A config for authentication tests (its attempt limit raised: tests log
/// in many times from 127.0.0.1).
pub fn auth_config() -> ServerConfig {
    let mut config = ServerConfig {
        mode: echo_proto::Mode::Auth,
        ..ServerConfig::default()
    };
    config.auth.attempts_per_minute = 10_000;
    config
}

/// The SQLite store of a test server in `dir`.
async fn open_store(dir: &std::path::Path, config: &ServerConfig) -> SqliteStore {
    SqliteStore::open(&dir.join(DB_FILE), config.lifetimes())
        .await
        .unwrap()
}
