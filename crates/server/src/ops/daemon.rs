//! Running as a service: detaching from the terminal, the pid file, and
//! telling systemd that the server is ready.

use std::{io, path::Path};

/// Detaches from the terminal: forks, lets the parent exit, starts a new
/// session, and points standard input and output at `/dev/null`. The working
/// directory is kept, so relative paths in the config keep their meaning.
///
/// Must be called before any thread is started (the Tokio runtime, the log
/// writer): only the calling thread survives a fork.
pub fn detach() -> io::Result<()> {
    nix::unistd::daemon(true, false).map_err(io::Error::from)
}

/// Writes the process id to `path`, replacing the file atomically (through
/// an exclusive temporary file: a planted link is not followed).
pub fn write_pid_file(path: &Path) -> io::Result<()> {
    let pid = format!("{}\n", std::process::id());
    crate::sys::files::replace_file(path, pid.as_bytes(), 0o644)
}

/// File descriptors kept out of `max_connections`: standard streams, log
/// and store files, the runtime's own, and room to tell extra clients
/// `server_busy` (each holds one until it has been told).
pub const FD_RESERVE: u64 = 64;

/// Raises the soft open-file limit to the hard limit, and returns how many
/// connections fit under it with [`FD_RESERVE`] to spare.
pub fn connections_that_fit() -> io::Result<usize> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    let limit = if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
        hard
    } else {
        soft
    };
    let fit = limit.saturating_sub(FD_RESERVE).max(1);
    Ok(usize::try_from(fit).unwrap_or(usize::MAX))
}

/// Sends `READY=1` to systemd when it started us with `Type=notify`
/// (`NOTIFY_SOCKET` is set); does nothing otherwise.
pub fn notify_ready() -> io::Result<()> {
    notify("READY=1")
}

/// Sends `state` (`READY=1`, `MAINPID=N`, several lines of them) to
/// systemd when it started us with `Type=notify` (`NOTIFY_SOCKET` is set);
/// does nothing otherwise. A process started by `echo-server upgrade`
/// inherits the variable: it reports `MAINPID=` of its own, which systemd
/// takes with `NotifyAccess=all` (`config/echo-server.service`).
pub fn notify(state: &str) -> io::Result<()> {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let message = state.as_bytes();
    let datagram = std::os::unix::net::UnixDatagram::unbound()?;
    let bytes = socket.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // A name in the abstract namespace (Linux only).
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        datagram.send_to_addr(message, &addr)?;
    } else {
        datagram.send_to(message, socket)?;
    }
    Ok(())
}
