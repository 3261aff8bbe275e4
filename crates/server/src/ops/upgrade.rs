//! Replacing the running binary without closing the port (`echo-server
//! upgrade`, SIGUSR2), as nginx's binary upgrade and HAProxy's `-x` do:
//! the running server starts the binary at its own path with its own
//! arguments, and hands it the listening sockets by inheritance. The new
//! process opens the store, binds its control socket, and says `ready` on
//! a socket pair it inherited too; only then does the old one stop
//! accepting and drain. Both accept on the one socket in between, so the
//! port never stops accepting.
//!
//! [`Successor`] is the old process's side, [`Handoff`] the new one's.
//! The channel speaks one line: `ready`, or `failed REASON` (the sentence
//! the new process would print on its standard error).

use std::{
    ffi::OsString,
    io::{self, Write},
    net::TcpListener,
    os::{fd::AsRawFd, unix::net::UnixStream},
    path::PathBuf,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::sys::inherit::{adopt_socket, inheritable};

/// The environment variable naming the descriptors a new process was
/// handed: `ready:N,port:N` and, with a metrics port, `,metrics:N`.
pub const HANDOFF_ENV: &str = "ECHO_SERVER_HANDOFF";
/// How long the new process has to say it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new process that failed has to exit before it is killed.
const EXIT_WAIT: Duration = Duration::from_secs(2);
/// The systemd variables of socket activation: the new process is handed
/// its sockets, and must not take fds 3.. for sockets as the first did.
const SOCKET_ACTIVATION_ENV: [&str; 3] = ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"];

/// The old process's side: what it needs to start its successor.
#[derive(Debug)]
pub struct Successor {
    /// The binary's path as resolved at start: a file put in its place
    /// since is the new binary.
    exe: PathBuf,
    args: Vec<OsString>,
    port: TcpListener,
    metrics: Option<TcpListener>,
}

/// Why the new process did not take over; the old one goes on serving.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The binary could not be started at all.
    #[error("cannot start {}: {source}", exe.display())]
    Spawn {
        /// The binary.
        exe: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The new process ended (or closed its channel) before it was ready.
    #[error("the new process (pid {pid}) {} before it was ready{}", ended(*status), said(reason))]
    Exited {
        /// Its pid.
        pid: u32,
        /// How it ended, if it did.
        status: Option<ExitStatus>,
        /// What it said was wrong, if it said.
        reason: Option<String>,
    },
    /// The new process did not say it was ready in time; it was killed.
    #[error("the new process (pid {pid}) was not ready within {}s; it was stopped", READY_TIMEOUT.as_secs())]
    NotReady {
        /// Its pid.
        pid: u32,
    },
    /// Preparing the sockets to hand over failed.
    #[error("cannot prepare the sockets for the new process: {0}")]
    Sockets(#[from] io::Error),
}

impl Successor {
    /// Resolves the binary's path and arguments now, at start, and keeps a
    /// copy of the listening sockets to hand over.
    pub fn prepare(port: &TcpListener, metrics: Option<&TcpListener>) -> io::Result<Self> {
        Ok(Self {
            exe: std::env::current_exe()?,
            args: std::env::args_os().skip(1).collect(),
            port: port.try_clone()?,
            metrics: metrics.map(TcpListener::try_clone).transpose()?,
        })
    }

    /// Starts the new process and waits (at most [`READY_TIMEOUT`]) until
    /// it says it is ready; its pid then. A process that fails is gone when
    /// this returns.
    pub async fn start(&self) -> Result<u32, UpgradeError> {
        let (ours, theirs) = UnixStream::pair()?;
        // Copies without close-on-exec, kept only until the child is
        // started: nothing else in the server starts programs, and one
        // upgrade runs at a time, so they reach this child only.
        let handed = [
            Some(inheritable(&theirs)?),
            Some(inheritable(&self.port)?),
            self.metrics.as_ref().map(inheritable).transpose()?,
        ];
        let mut spec = format!(
            "ready:{},port:{}",
            handed[0].as_ref().map_or(-1, AsRawFd::as_raw_fd),
            handed[1].as_ref().map_or(-1, AsRawFd::as_raw_fd),
        );
        if let Some(metrics) = &handed[2] {
            spec.push_str(&format!(",metrics:{}", metrics.as_raw_fd()));
        }
        let mut command = tokio::process::Command::new(&self.exe);
        command.args(&self.args).env(HANDOFF_ENV, spec);
        for name in SOCKET_ACTIVATION_ENV {
            command.env_remove(name);
        }
        let spawned = command.stdin(Stdio::null()).spawn();
        // The copies are the child's now (or nobody's): ours go.
        drop((handed, theirs));
        let child = spawned.map_err(|source| UpgradeError::Spawn {
            exe: self.exe.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        let mut child = Unready(Some(child));
        ours.set_nonblocking(true)?;
        let mut lines = BufReader::new(tokio::net::UnixStream::from_std(ours)?).lines();
        let said = tokio::time::timeout(READY_TIMEOUT, lines.next_line()).await;
        let reason = match said {
            Ok(Ok(Some(line))) if line == "ready" => {
                child.0 = None;
                return Ok(pid);
            }
            Ok(Ok(Some(line))) => line.strip_prefix("failed ").map(str::to_owned),
            Ok(_) => None,
            Err(_) => {
                child.kill().await;
                return Err(UpgradeError::NotReady { pid });
            }
        };
        let status = child.ended().await;
        Err(UpgradeError::Exited {
            pid,
            status,
            reason,
        })
    }
}

/// A new process not ready yet. Dropped before it is (the old process
/// stops waiting for it: it is shutting down, its runtime going), it is
/// killed: a server that was asked to stop must not leave behind a new one
/// that would serve the port once ready.
struct Unready(Option<tokio::process::Child>);

impl Unready {
    /// Kills the process and reaps it.
    async fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// How the process ended: it has [`EXIT_WAIT`] to exit, then it is
    /// killed.
    async fn ended(&mut self) -> Option<ExitStatus> {
        let mut child = self.0.take()?;
        match tokio::time::timeout(EXIT_WAIT, child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = child.start_kill();
                child.wait().await.ok()
            }
        }
    }
}

impl Drop for Unready {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.start_kill();
        }
    }
}

/// How a new process ended, for [`UpgradeError::Exited`].
fn ended(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            (None, None) => "ended".to_owned(),
        },
        None => "closed its channel".to_owned(),
    }
}

/// ": REASON", when the new process gave one.
fn said(reason: &Option<String>) -> String {
    reason
        .as_deref()
        .map_or_else(String::new, |reason| format!(": {reason}"))
}

/// The new process's side: the listening sockets it was handed (the
/// channel on which it says whether it is ready comes beside them).
#[derive(Debug)]
pub struct Handoff {
    /// The main port.
    pub port: TcpListener,
    /// The metrics port, when the old process had one.
    pub metrics: Option<TcpListener>,
}

/// The channel back to the old process.
#[derive(Debug)]
pub struct Readiness(UnixStream);

impl Handoff {
    /// What the old process handed over, when this process was started by
    /// `echo-server upgrade` ([`HANDOFF_ENV`]). Call it first thing, before
    /// anything is opened: it takes charge of inherited descriptors.
    pub fn from_env() -> io::Result<Option<(Self, Readiness)>> {
        let Some(spec) = std::env::var_os(HANDOFF_ENV) else {
            return Ok(None);
        };
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{HANDOFF_ENV} is not ready:N,port:N[,metrics:N]"),
            )
        };
        let spec = spec.into_string().map_err(|_| bad())?;
        let mut fds = [None, None, None];
        for part in spec.split(',') {
            let (name, fd) = part.split_once(':').ok_or_else(bad)?;
            let slot = ["ready", "port", "metrics"].iter().position(|n| *n == name);
            let slot = slot.ok_or_else(bad)?;
            fds[slot] = Some(fd.parse().map_err(|_| bad())?);
        }
        let [Some(ready), Some(port), metrics] = fds else {
            return Err(bad());
        };
        let readiness = Readiness(adopt_socket(ready)?.into());
        let handoff = Self {
            port: adopt_socket(port)?.into(),
            metrics: metrics.map(adopt_socket).transpose()?.map(Into::into),
        };
        Ok(Some((handoff, readiness)))
    }
}

impl Readiness {
    /// Tells the old process that this one serves: it stops accepting.
    pub fn ready(mut self) -> io::Result<()> {
        self.0.write_all(b"ready\n")
    }

    /// Tells the old process why this one will not serve (one line).
    pub fn failed(mut self, reason: &str) {
        let line = reason.replace('\n', " ");
        let _ = writeln!(self.0, "failed {line}");
    }
}
