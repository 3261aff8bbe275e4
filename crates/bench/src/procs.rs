//! The processes under test: the real server and the reference echo, each a
//! child process (this same binary, re-run with a hidden subcommand), so
//! their CPU time and memory can be read from /proc apart from the load
//! generator's.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
};

use anyhow::{Context, bail};

/// A server child. Dropping it closes its standard input, which stops it.
#[derive(Debug)]
pub struct Proc {
    pub addr: SocketAddr,
    child: Child,
    stdin: Option<ChildStdin>,
}

/// CPU time and memory of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// User + system CPU seconds since the process started.
    pub cpu_secs: f64,
    /// Resident set size now, KiB.
    pub rss_kib: u64,
    /// Peak resident set size, KiB.
    pub peak_rss_kib: u64,
}

impl Proc {
    /// Starts `echo-bench <args>` and reads its `listening on ADDR` line.
    pub fn spawn(args: &[&str], dir: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this program's path")?;
        let mut child = Command::new(exe)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start a server process")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            bail!("the server process did not start: {line:?}");
        };
        let addr = addr.split(' ').next().unwrap_or_default().parse()?;
        let stdin = child.stdin.take();
        Ok(Self { addr, child, stdin })
    }

    /// Reads the process's CPU time and memory from /proc.
    pub fn stats(&self) -> anyhow::Result<ProcStats> {
        read_stats(self.child.id())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.wait();
    }
}

/// CPU time and memory of process `pid`, from /proc. Clock ticks are the
/// kernel's USER_HZ, 100 on Linux.
pub fn read_stats(pid: u32) -> anyhow::Result<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let cpu_secs = (ticks(11) + ticks(12)) as f64 / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|line| line.starts_with(key))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcStats {
        cpu_secs,
        rss_kib: kib("VmRSS:"),
        peak_rss_kib: kib("VmHWM:"),
    })
}
