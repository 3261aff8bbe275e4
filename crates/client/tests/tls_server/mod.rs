//! The real `echo-server` binary, started for a test, and the
//! certificates it is given.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{OnceLock, mpsc},
    time::{Duration, Instant},
};

/// The `echo-server` binary: beside `echo-client` once the workspace is
/// built, else built now.
pub fn server_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let client = Path::new(super::common::CLIENT);
        let server = client.with_file_name("echo-server");
        if !server.exists() {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "echo-server", "--bin", "echo-server"])
                .status()
                .unwrap();
            assert!(status.success(), "cannot build echo-server");
        }
        server
    })
    .clone()
}

/// A running `echo-server` on a free loopback port.
pub struct RealServer {
    pub port: u16,
    /// The key's fingerprint from the listening line, with `--tls`.
    pub fingerprint: Option<String>,
    child: Child,
    dir: tempfile::TempDir,
}

impl RealServer {
    /// Starts `echo-server ARGS` (with `--tls-cert`/`--tls-key` when
    /// `files` are given) and waits for its listening line.
    pub fn start(args: &[&str], files: Option<(&Path, &Path)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(server_binary());
        command
            .args(["--port", "0", "--host", "127.0.0.1"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--log-dir")
            .arg(dir.path().join("logs"))
            .args(args)
            .env_remove("ECHO_SERVER_TLS")
            .env_remove("ECHO_SERVER_PORT")
            .env_remove("ECHO_SERVER_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some((cert, key)) = files {
            command
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no listening line: {line:?}"));
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        let fingerprint = line
            .split("(TLS key ")
            .nth(1)
            .map(|rest| rest.trim_end().trim_end_matches(')').to_owned());
        Self {
            port,
            fingerprint,
            child,
            dir,
        }
    }

    /// The server's log file.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("logs/log_serv.txt")
    }

    /// Waits until the log has a line with `text` (bounded).
    pub fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.count_in_log(text) == 0 {
            assert!(Instant::now() < deadline, "the log never said {text:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn count_in_log(&self, text: &str) -> usize {
        std::fs::read_to_string(self.log())
            .map(|log| log.matches(text).count())
            .unwrap_or(0)
    }

    /// Sends SIGHUP and waits for one more log line with `text`.
    pub fn hangup_and_wait_for(&self, text: &str) {
        let before = self.count_in_log(text);
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.count_in_log(text) == before {
            assert!(
                Instant::now() < deadline,
                "SIGHUP: the log never said {text:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What `echo-server tls fingerprint` prints for these files.
    pub fn tls_fingerprint_command(&self, cert: &Path, key: &Path) -> String {
        let out = Command::new(server_binary())
            .args(["tls", "fingerprint", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new self-signed pair for localhost and 127.0.0.1.
pub fn write_self_signed(cert: &Path, key: &Path) {
    let pair = echo_tls::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    echo_tls::write_pair(&pair, cert, key).unwrap();
}

/// A test CA (its certificate written to `ca`) and, for each entry, a
/// certificate it signs for those names, with its key.
pub fn write_ca_signed(ca: &Path, leaves: &[(&Path, &Path, &[&str])]) {
    let names: Vec<Vec<String>> = leaves
        .iter()
        .map(|(_, _, names)| names.iter().map(|n| n.to_string()).collect())
        .collect();
    let (ca_pem, pairs) = echo_tls::ca_signed(&names).unwrap();
    std::fs::write(ca, ca_pem).unwrap();
    for ((cert, key, _), pair) in leaves.iter().zip(pairs) {
        std::fs::write(cert, pair.cert_pem).unwrap();
        std::fs::write(key, pair.key_pem).unwrap();
    }
}
