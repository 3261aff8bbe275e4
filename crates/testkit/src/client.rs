//! Clients: [`TestClient`] (async, made of the proto crate's extension
//! traits), blocking helpers, and small tools the tests share.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use echo_proto::{
    ClientMsg, ServerMsg,
    ext::{AsyncFrameRead, AsyncFrameWrite},
};
use tokio::net::TcpStream;

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
        self.bye_and_cause_within_a_second()
            .await
            .map(|(reason, _)| reason)
    }

    /// Reads until `bye`, for at most a second: its reason and cause, or
    /// `None`.
    pub async fn bye_and_cause_within_a_second(
        &mut self,
    ) -> Option<(echo_proto::ByeReason, Option<echo_proto::ByeCause>)> {
        let wait = async {
            loop {
                match self.try_recv().await {
                    Some(ServerMsg::Bye { reason, cause, .. }) => return Some((reason, cause)),
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

/// A port that was free a moment ago, below the kernel's range of
/// ephemeral ports: no outgoing connection (and no server on port 0) of a
/// test running beside can take it before the caller binds it, as one could
/// a port the kernel handed out. Each call of a test process tries the next
/// port of its own sequence (started at a place its pid picks).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = (10_000, ephemeral_ports_start().min(32_768));
    if high <= low + 1_000 {
        return kernel_port();
    }
    let span = high - low;
    let start = std::process::id() * 7_919 % span;
    for _ in 0..span.min(2_000) {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(low + offset).unwrap_or(0);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    kernel_port()
}

/// The first port of `net.ipv4.ip_local_port_range` (32768 if unreadable).
fn ephemeral_ports_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A port the kernel hands out.
fn kernel_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects with a blocking socket (10 s read timeout) and reads `hello`.
pub fn connect_blocking(addr: SocketAddr) -> std::net::TcpStream {
    after_hello_blocking(std::net::TcpStream::connect(addr).unwrap())
}

/// Sets a 10 s read timeout on a connected blocking `stream` and reads its
/// `hello`.
pub fn after_hello_blocking(mut stream: std::net::TcpStream) -> std::net::TcpStream {
    use echo_proto::ext::BlockingFrameRead;
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
