//! The real `echo-server` binary, started for a test: the one launcher of
//! the workspace's tests.
//!
//! The binary is located through the target directory (see
//! [`server_binary`]): a test binary runs from `target/<profile>/deps/`, and
//! `echo-server` is built to `target/<profile>/`. Cargo builds it before it
//! runs the server crate's integration tests; for other crates' tests (the
//! client's), it is built once here when missing.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::wait::wait_until;

/// The `echo-server` binary of this build: `target/<profile>/echo-server`,
/// beside the `deps` directory the running test binary is in; built with
/// `cargo build` when it is not there yet.
pub fn server_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let test = std::env::current_exe().unwrap();
        let deps = test.parent().unwrap();
        let profile = if deps.ends_with("deps") {
            deps.parent().unwrap()
        } else {
            deps
        };
        let server = profile.join("echo-server");
        if !server.exists() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-q", "-p", "echo-server", "--bin", "echo-server"])
                .status()
                .unwrap();
            assert!(status.success(), "cannot build echo-server");
        }
        server
    })
    .clone()
}

/// The `echo-server` binary running as a child process.
pub struct ServerProcess {
    pub child: Child,
    pub stdout: BufReader<ChildStdout>,
    pub first_line: String,
    /// The directory given to [`ServerProcess::start`].
    dir: PathBuf,
    /// The directory [`ServerProcess::launch`] made, removed when dropped.
    _own: Option<tempfile::TempDir>,
}

impl ServerProcess {
    /// Starts the binary with `args` (plus `--log-dir` and `--data-dir` in
    /// `dir`) and reads its first line of output.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_command(Command::new(server_binary()), dir, args, env)
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
            .env_remove("ECHO_SERVER_TLS")
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
            dir: dir.to_owned(),
            _own: None,
        }
    }

    /// Starts `echo-server --port 0 --host 127.0.0.1 ARGS` in a temporary
    /// directory of its own (with `--tls-cert`/`--tls-key` when `tls` files
    /// are given).
    pub fn launch(args: &[&str], tls: Option<(&Path, &Path)>) -> Self {
        let own = tempfile::tempdir().unwrap();
        let mut all: Vec<&str> = vec!["--port", "0", "--host", "127.0.0.1"];
        all.extend_from_slice(args);
        let (cert, key);
        if let Some((c, k)) = tls {
            cert = c.display().to_string();
            key = k.display().to_string();
            all.extend_from_slice(&["--tls-cert", &cert, "--tls-key", &key]);
        }
        let mut server = Self::start(own.path(), &all, &[]);
        assert!(
            server.first_line.starts_with("listening on "),
            "no listening line: {:?}",
            server.first_line
        );
        server._own = Some(own);
        server
    }

    /// The port from the `listening on` line.
    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// The key's fingerprint from the `listening on` line, with `--tls`.
    pub fn fingerprint(&self) -> Option<String> {
        self.first_line
            .split("(TLS key ")
            .nth(1)
            .map(|rest| rest.trim_end().trim_end_matches(')').to_owned())
    }

    /// `echo-server ARGS --data-dir DIR/data` (an admin command of this
    /// server's data directory), with no store or port from the
    /// environment; its output.
    pub fn admin(&self, args: &[&str]) -> std::process::Output {
        Command::new(server_binary())
            .args(args)
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .env_remove("ECHO_SERVER_STORE")
            .env_remove("ECHO_SERVER_PORT")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The server's current log file.
    pub fn log(&self) -> PathBuf {
        self.dir.join("logs/log_serv.txt")
    }

    fn count_in_log(&self, text: &str) -> usize {
        std::fs::read_to_string(self.log())
            .map(|log| log.matches(text).count())
            .unwrap_or(0)
    }

    /// Waits (at most 10 s) until the log has a line with `text`.
    pub fn wait_for_log(&self, text: &str) {
        let found = wait_until(Duration::from_secs(10), || self.count_in_log(text) > 0);
        assert!(found, "the log never said {text:?}");
    }

    /// Sends SIGHUP and waits (at most 10 s) for one more log line with
    /// `text`.
    pub fn hangup_and_wait_for(&self, text: &str) {
        let before = self.count_in_log(text);
        self.signal(nix::sys::signal::Signal::SIGHUP);
        let found = wait_until(Duration::from_secs(10), || self.count_in_log(text) > before);
        assert!(found, "SIGHUP: the log never said {text:?}");
    }

    /// `echo-server reload` of this server (through its control socket).
    pub fn reload(&self) -> std::process::Output {
        Command::new(server_binary())
            .args(["reload", "--port", &self.port().to_string(), "--data-dir"])
            .arg(self.dir.join("data"))
            .env_remove("ECHO_SERVER_PORT")
            .output()
            .unwrap()
    }

    /// What `echo-server tls fingerprint` prints for these files.
    pub fn tls_fingerprint_command(cert: &Path, key: &Path) -> String {
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
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A copy of the binary in `dir`, to start a server from and replace.
pub fn binary_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("echo-server");
    std::fs::copy(server_binary(), &copy).unwrap();
    copy
}

/// Puts a shell script with `body` in the place of `binary`, as a package
/// manager replaces a file: a new file renamed over the old.
pub fn replace_with_script(binary: &Path, body: &str) {
    let next = binary.with_extension("next");
    std::fs::write(&next, format!("#!/bin/sh\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&next, binary).unwrap();
}

/// A process the test did not start itself (the new server an upgrade
/// started is no child of the test), killed when dropped.
pub struct KillOnDrop(pub u32);

impl KillOnDrop {
    /// Whether the process is still there (not yet reaped counts as gone
    /// only once it has exited: a zombie has no `/proc/PID/exe` link).
    pub fn is_running(&self) -> bool {
        std::fs::read_link(format!("/proc/{}/exe", self.0)).is_ok()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0 as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
