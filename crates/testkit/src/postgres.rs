//! A throwaway PostgreSQL for one test: `initdb` and `pg_ctl` from the
//! installed binaries (`/usr/lib/postgresql/*/bin` or `PATH`), a private
//! directory and socket, a free port on 127.0.0.1; stopped and removed when
//! dropped (and by a watchdog if the test process dies first). As root, the
//! cluster runs as the `postgres` user, since `initdb` refuses root.
//!
//! Where PostgreSQL is not installed, [`Postgres::start`] prints one line
//! and returns `None`, unless `ECHO_TEST_POSTGRES=require`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Once,
};

/// A running throwaway cluster with one database, `echo`, and a superuser,
/// `echo`, who connects without a password.
pub struct Postgres {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) bin: PathBuf,
    pub port: u16,
    /// More server settings (`-c name=value ...`).
    pub(crate) settings: String,
}

const UNPRIVILEGED: &str = "postgres";

pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The directory of `initdb` and `pg_ctl`: the newest under
/// `/usr/lib/postgresql`, else from `PATH`.
fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
    })
}

/// A command running `program` as the cluster's owner.
pub(crate) fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", UNPRIVILEGED, "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

pub(crate) fn run(mut command: Command, what: &str) {
    let output = command.stdin(Stdio::null()).output().unwrap();
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Postgres {
    /// Starts a cluster, or says why not: `None` (with one line printed
    /// per test binary) where PostgreSQL is not installed.
    pub fn start() -> Option<Self> {
        Self::start_with(None)
    }

    /// Whether a cluster could be started (with the same skip line or
    /// `ECHO_TEST_POSTGRES=require` failure as [`Postgres::start`]).
    pub fn available() -> bool {
        find_bin().is_some() || Self::start_with(None).is_some()
    }

    /// A cluster that also speaks TLS with `pair` (certificate and key,
    /// PEM), for `sslmode=require`.
    pub fn start_tls(pair: &echo_tls::SelfSigned) -> Option<Self> {
        Self::start_with(Some(pair))
    }

    fn start_with(tls: Option<&echo_tls::SelfSigned>) -> Option<Self> {
        let bin = installed_bin()?;
        let dir = fresh_cluster(&bin);
        let settings = tls
            .map(|pair| tls_settings(dir.path(), pair))
            .unwrap_or_default();
        let pg = Self {
            dir,
            bin,
            port: crate::free_port(),
            settings,
        };
        pg.pg_ctl("start");
        pg.watch_for_the_test_dying();
        let mut createdb = as_owner(&pg.bin.join("createdb"));
        createdb.arg("-h").arg(pg.dir.path()).args([
            "-p",
            &pg.port.to_string(),
            "-U",
            "echo",
            "echo",
        ]);
        run(createdb, "createdb");
        Some(pg)
    }

    /// `postgres://echo@127.0.0.1:PORT/echo?sslmode=disable`.
    pub fn url(&self) -> String {
        format!(
            "postgres://echo@127.0.0.1:{}/echo?sslmode=disable",
            self.port
        )
    }

    /// One query through `psql`, its rows unaligned (`a|b`).
    pub fn psql(&self, query: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-c", query, &self.url()])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// The postmaster's process id, and those of its children (backends
    /// and auxiliary processes) at this moment.
    pub fn pids(&self) -> Vec<i32> {
        let pid_file = self.dir.path().join("data").join("postmaster.pid");
        let text = std::fs::read_to_string(pid_file).unwrap();
        let postmaster: i32 = text.lines().next().unwrap().trim().parse().unwrap();
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid ...`; comm may hold spaces.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let ppid = after.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids
    }

    /// The whole cluster stopped (SIGSTOP) until the guard is dropped: it
    /// answers nothing and reports nothing, as a hung database does.
    pub fn freeze(&self) -> Frozen {
        let mut frozen = Frozen(Vec::new());
        // Twice: a backend forked while the first round ran is caught by
        // the second (the postmaster, stopped first, forks no more).
        for _ in 0..2 {
            for pid in self.pids() {
                if !frozen.0.contains(&pid) {
                    frozen.stop(pid);
                }
            }
        }
        frozen
    }

    /// `pg_ctl restart`: every connection is cut, then it serves again.
    pub fn restart(&self) {
        self.pg_ctl("restart");
    }

    /// `pg_ctl stop -m fast`.
    pub fn stop(&self) {
        let mut command = as_owner(&self.bin.join("pg_ctl"));
        command
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "fast", "-w", "stop"]);
        run(command, "pg_ctl stop");
    }

    /// Starts it again after [`Postgres::stop`].
    pub fn start_again(&self) {
        self.pg_ctl("start");
    }

    pub(crate) fn pg_ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 {}",
            self.port,
            self.dir.path().display(),
            self.settings
        );
        let mut command = as_owner(&self.bin.join("pg_ctl"));
        command
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("postgres.log"))
            .args(["-o", &options, "-w", "-m", "fast", action]);
        run(command, &format!("pg_ctl {action}"));
    }

    /// Stops and removes the cluster if this process dies without dropping
    /// it (a panic in another thread, a signal).
    pub(crate) fn watch_for_the_test_dying(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {runas}{pg_ctl} -D '{data}' -m immediate stop; rm -rf '{dir}'",
            pid = std::process::id(),
            runas = if is_root() {
                "runuser -u postgres -- "
            } else {
                ""
            },
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.dir.path().join("data").display(),
            dir = self.dir.path().display(),
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Processes stopped with SIGSTOP, continued (SIGCONT) when dropped, so a
/// failing test leaves nothing stopped.
#[derive(Default)]
pub struct Frozen(pub Vec<i32>);

impl Frozen {
    /// Stops `pid` until this guard is dropped.
    pub fn stop(&mut self, pid: i32) {
        use nix::{sys::signal, unistd::Pid};
        if signal::kill(Pid::from_raw(pid), signal::Signal::SIGSTOP).is_ok() {
            self.0.push(pid);
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        use nix::{sys::signal, unistd::Pid};
        for pid in self.0.drain(..) {
            let _ = signal::kill(Pid::from_raw(pid), signal::Signal::SIGCONT);
        }
    }
}

/// PostgreSQL's programs, or `None` (said once) where it is not installed;
/// with `ECHO_TEST_POSTGRES=require` a missing PostgreSQL is a failure.
pub(crate) fn installed_bin() -> Option<PathBuf> {
    let bin = find_bin();
    if bin.is_none() {
        let why = "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH; apt-get install postgresql)";
        if std::env::var("ECHO_TEST_POSTGRES").as_deref() == Ok("require") {
            panic!("ECHO_TEST_POSTGRES=require, but {why}");
        }
        static SAID: Once = Once::new();
        SAID.call_once(|| eprintln!("skipped: the PostgreSQL tests: {why}"));
    }
    bin
}

/// A new cluster in a temporary directory (owned by the unprivileged user
/// when the tests run as root), made by `initdb`.
fn fresh_cluster(bin: &Path) -> tempfile::TempDir {
    let dir = owned_dir();
    let mut initdb = as_owner(&bin.join("initdb"));
    initdb.arg("-D").arg(dir.path().join("data")).args([
        "-U",
        "echo",
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
        "-N",
    ]);
    run(initdb, "initdb");
    dir
}

/// An empty temporary directory, owned by the unprivileged user when the
/// tests run as root.
pub(crate) fn owned_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("echo-pg-")
        .tempdir()
        .unwrap();
    if is_root() {
        let user = nix::unistd::User::from_name(UNPRIVILEGED)
            .unwrap()
            .expect("as root, the tests run PostgreSQL as the postgres user");
        nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).unwrap();
    }
    dir
}

/// Writes `pair` into the cluster in `dir` and gives the settings that
/// turn TLS on.
fn tls_settings(dir: &Path, pair: &echo_tls::SelfSigned) -> String {
    use std::os::unix::fs::PermissionsExt;
    let data = dir.join("data");
    let (cert, key) = (data.join("server.crt"), data.join("server.key"));
    std::fs::write(&cert, &pair.cert_pem).unwrap();
    std::fs::write(&key, &pair.key_pem).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    if is_root() {
        let user = nix::unistd::User::from_name(UNPRIVILEGED).unwrap().unwrap();
        for file in [&cert, &key] {
            nix::unistd::chown(file, Some(user.uid), Some(user.gid)).unwrap();
        }
    }
    "-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".into()
}
