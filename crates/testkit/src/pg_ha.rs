//! A throwaway primary and its streaming standby, as `scripts/throwaway-
//! postgres.sh` makes them: the standby copied with `pg_basebackup -R`
//! (which writes its `primary_conninfo`) and a replication slot, made
//! synchronous on the primary (`synchronous_standby_names`, with the default
//! `synchronous_commit = on`: a commit is answered only once the standby
//! has it on disk), then promoted (`pg_ctl promote`) when the primary is
//! gone. The primary is killed as a crash is: `SIGKILL` to its postmaster.

use std::time::{Duration, Instant};

use crate::postgres::{Postgres, as_owner, installed_bin, owned_dir, run};

/// The replication slot the standby streams from.
pub const SLOT: &str = "echo_standby";

/// A primary and a streaming standby (synchronous unless asked otherwise).
pub struct Pair {
    pub primary: Postgres,
    pub standby: Postgres,
}

impl Pair {
    /// A primary with a synchronous standby that streams from it directly.
    pub fn start() -> Option<Self> {
        let primary = Postgres::start()?;
        let standby = primary.start_standby(primary.port);
        primary.make_synchronous();
        Some(Self { primary, standby })
    }

    /// `postgres://echo@127.0.0.1:P,127.0.0.1:S/echo?...read-write`: the
    /// primary first, then the standby, as a server's `--store`.
    pub fn url(&self) -> String {
        multi_host_url(&[self.primary.port, self.standby.port])
    }
}

/// The store URL naming every one of `ports` on 127.0.0.1, in order, for
/// the writable one (`target_session_attrs=read-write`).
pub fn multi_host_url(ports: &[u16]) -> String {
    let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    format!(
        "postgres://echo@{}/echo?sslmode=disable&target_session_attrs=read-write",
        hosts.join(",")
    )
}

impl Postgres {
    /// A hot standby of this cluster, copied by `pg_basebackup -R` with a
    /// new replication slot ([`SLOT`]), streaming from 127.0.0.1:`upstream`
    /// (this cluster's port, or a relay in front of it).
    pub fn start_standby(&self, upstream: u16) -> Postgres {
        let bin = installed_bin().expect("the primary started, so PostgreSQL is installed");
        let dir = owned_dir();
        let mut backup = as_owner(&bin.join("pg_basebackup"));
        backup
            .args(["-h", "127.0.0.1", "-p", &upstream.to_string(), "-U", "echo"])
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-R", "-C", "-S", SLOT, "-X", "stream", "-c", "fast", "-N"]);
        run(backup, "pg_basebackup");
        let standby = Postgres {
            dir,
            bin,
            port: crate::free_port(),
            settings: self.settings.clone(),
        };
        standby.pg_ctl("start");
        standby.watch_for_the_test_dying();
        standby
    }

    /// Makes every standby synchronous (`synchronous_standby_names = '*'`,
    /// reloaded) and waits until one is (`pg_stat_replication`).
    pub fn make_synchronous(&self) {
        self.psql("ALTER SYSTEM SET synchronous_standby_names = '*'");
        self.psql("SELECT pg_reload_conf()");
        let synchronous = crate::wait_until(Duration::from_secs(20), || {
            std::thread::sleep(Duration::from_millis(50));
            self.psql("SELECT sync_state FROM pg_stat_replication")
                .lines()
                .any(|state| state.trim() == "sync")
        });
        assert!(synchronous, "the standby never became synchronous");
    }

    /// `pg_ctl promote -w`: how long the promotion itself took.
    pub fn promote(&self) -> Duration {
        let started = Instant::now();
        let mut command = as_owner(&self.bin.join("pg_ctl"));
        command
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-w", "-t", "30", "promote"]);
        run(command, "pg_ctl promote");
        started.elapsed()
    }

    /// `kill -9` of the postmaster, at once: a crash. Its children end by
    /// themselves as they notice (PostgreSQL watches for its postmaster's
    /// death).
    pub fn crash(&self) -> Vec<i32> {
        use nix::{sys::signal, unistd::Pid};
        let pids = self.pids();
        signal::kill(Pid::from_raw(pids[0]), signal::Signal::SIGKILL).unwrap();
        pids
    }

    /// [`Postgres::crash`], then waits for every process of the cluster
    /// to be gone and the postmaster reaped, since a new postmaster refuses
    /// to start before.
    pub fn kill_9(&self) {
        let pids = self.crash();
        let gone = crate::wait_until(Duration::from_secs(20), || {
            pids.iter().all(|pid| is_gone(*pid))
        });
        assert!(
            gone,
            "the cluster's processes outlived its postmaster by 20 s"
        );
    }

    /// Whether this cluster is a standby still (`pg_is_in_recovery()`).
    pub fn in_recovery(&self) -> bool {
        self.psql("SELECT pg_is_in_recovery()").trim() == "t"
    }

    /// The data directory's log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

/// Whether `pid` is gone, reaped too: a new postmaster refuses to start
/// while the old one's process id still shows, even as a zombie (here pid 1
/// reaps it within a second or two).
fn is_gone(pid: i32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}
