//! `scripts/cluster.sh` run by a test: free ports for everything, a private
//! `TMPDIR` (so that what the script leaves behind can be seen), its output
//! collected as it comes, and what its banner says.

use std::{
    io::Read,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{free_port, wait_until};

/// The ports the script is given, each free when picked.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub lb: u16,
    pub stats: u16,
    pub health: [u16; 3],
}

impl Ports {
    pub fn free() -> Self {
        Self {
            lb: free_port(),
            stats: free_port(),
            health: [free_port(), free_port(), free_port()],
        }
    }

    /// Where clients connect.
    pub fn lb_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.lb))
    }
}

/// One server as the banner shows it.
#[derive(Debug, Clone)]
pub struct ServerLine {
    pub pid: i32,
    pub port: u16,
    pub log: PathBuf,
}

/// What the banner says once the cluster is up.
#[derive(Debug, Clone)]
pub struct Banner {
    pub servers: Vec<ServerLine>,
    pub postgres_pid: i32,
    pub haproxy_pid: i32,
    /// The directory the script made (and removes when it stops).
    pub work: PathBuf,
}

/// A running `scripts/cluster.sh`; interrupted (SIGINT) and waited for
/// when dropped.
pub struct ClusterScript {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    pub ports: Ports,
    tmp: tempfile::TempDir,
}

impl ClusterScript {
    /// Starts the script with `ports`, the built `echo-server` and `env`.
    pub fn spawn(ports: Ports, env: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        // PostgreSQL runs as the postgres user (as root) and must get through.
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )
        .unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster.sh");
        let mut command = Command::new("bash");
        command
            .arg(script)
            .env("ECHO_SERVER_BIN", crate::server_binary())
            .env("TMPDIR", tmp.path())
            .env("ECHO_LB_PORT", ports.lb.to_string())
            .env("ECHO_LB_STATS_PORT", ports.stats.to_string());
        for (i, health) in ports.health.iter().enumerate() {
            command.env(format!("ECHO_S{}_HEALTH", i + 1), health.to_string());
        }
        command.envs(env.iter().copied());
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
            ports,
            tmp,
        }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Both outputs, for a failing assertion.
    pub fn said(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr())
    }

    /// The banner, once the script printed it (within `limit`); fails the
    /// test if the script ended or was silent too long.
    pub fn wait_up(&mut self, limit: Duration) -> Banner {
        let up = wait_until(limit, || {
            self.stdout().contains("Ctrl-C stops everything")
                || matches!(self.child.try_wait(), Ok(Some(_)))
        });
        let out = self.stdout();
        assert!(
            up && out.contains("Ctrl-C stops everything"),
            "the cluster did not come up within {limit:?}: {}",
            self.said()
        );
        parse_banner(&out)
    }

    /// Whether standard error says `text` within `limit`.
    pub fn stderr_says(&self, text: &str, limit: Duration) -> bool {
        wait_until(limit, || self.stderr().contains(text))
    }

    /// How the script ended, if it did within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ctrl-C: SIGINT to the script, then its exit status (within `limit`).
    pub fn interrupt(&mut self, limit: Duration) -> Option<ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        self.wait_exit(limit)
    }

    /// What is left in the script's `TMPDIR` (its work directory, while it
    /// runs).
    pub fn left_behind(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect()
    }

    /// Processes whose command line names the script's `TMPDIR` (its
    /// servers and PostgreSQL do: `--data-dir`, `-D`).
    pub fn processes_left(&self) -> Vec<String> {
        let tmp = self.tmp.path().display().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
            .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
            .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
            .filter(|cmdline| cmdline.contains(&tmp))
            .collect()
    }
}

impl Drop for ClusterScript {
    fn drop(&mut self) {
        if self.interrupt(Duration::from_secs(30)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A thread that appends what `stream` says to the returned string.
fn collect(mut stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let into = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// `  server 1:  pid P, 127.0.0.1:PORT, /healthz on :H, log PATH` lines,
/// the pids of PostgreSQL and HAProxy, and the work directory.
fn parse_banner(out: &str) -> Banner {
    let servers = out
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("server "))
        .filter_map(|rest| rest.split_once(":  pid ").map(|(_, rest)| rest))
        .map(|rest| {
            let fields: Vec<&str> = rest.split(", ").collect();
            ServerLine {
                pid: fields[0].parse().unwrap(),
                port: fields[1].rsplit(':').next().unwrap().parse().unwrap(),
                log: fields[3].strip_prefix("log ").unwrap().into(),
            }
        })
        .collect();
    // `  database:  URL (pid P, log ...)`, `  haproxy:   pid P, ...`
    let pid_of = |label: &str| -> i32 {
        out.lines()
            .find_map(|line| line.trim_start().strip_prefix(label))
            .and_then(|rest| rest.split("pid ").nth(1))
            .and_then(|rest| rest.split(',').next())
            .unwrap()
            .parse()
            .unwrap()
    };
    let work = out
        .lines()
        .find_map(|line| line.strip_prefix("Ctrl-C stops everything and removes "))
        .unwrap()
        .into();
    Banner {
        servers,
        postgres_pid: pid_of("database:"),
        haproxy_pid: pid_of("haproxy:"),
        work,
    }
}

/// `GET path` on 127.0.0.1:`port`: the status code and the body, or `None`
/// when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: t\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((code, body))
}
