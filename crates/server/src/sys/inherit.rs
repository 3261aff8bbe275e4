//! Sockets a process did not open itself: the listening sockets and the
//! readiness channel a running server hands to the process replacing it
//! (`echo-server upgrade`), and the sockets systemd hands to a server it
//! starts by socket activation (`LISTEN_FDS`).
//!
//! Socket activation is done by hand rather than with the `listenfd`
//! crate: the upgrade needs the same adoption of an inherited descriptor
//! (its numbers come in `ECHO_SERVER_HANDOFF`, not from 3 on, as a child
//! started by `std::process::Command` cannot choose where its descriptors
//! land without `unsafe` code between fork and exec), so one checked
//! function serves both.

use std::{
    io,
    os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd, RawFd},
};

use nix::sys::stat::{SFlag, fstat};

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// A copy of `fd` that a child process inherits (without close-on-exec),
/// for as long as the copy is kept: drop it once the child is started.
pub fn inheritable(fd: impl AsFd) -> io::Result<OwnedFd> {
    // dup(2) never sets close-on-exec on the copy.
    Ok(nix::unistd::dup(fd)?)
}

/// Takes charge of descriptor `fd`, which this process inherited (its
/// number named by the environment), once it is checked to be an open
/// socket. Must be called before this process opens anything of its own
/// (the start of `start`), and at most once per number; the copy it
/// returns is made close-on-exec, so it is inherited only on purpose.
pub fn adopt_socket(fd: RawFd) -> io::Result<OwnedFd> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
    if fd < LISTEN_FDS_START {
        return Err(invalid(
            "not an inherited descriptor (0, 1 and 2 are stdio)",
        ));
    }
    // SAFETY: F_GETFD only reads the descriptor's flags; a number that is
    // not open fails with EBADF and touches nothing.
    #[allow(unsafe_code)]
    let open = unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } != -1;
    if !open {
        return Err(invalid("the inherited descriptor is not open"));
    }
    // SAFETY: the descriptor is open, and no object of this process owns
    // it: it was inherited across exec (the environment names it; the
    // caller runs before this process opens anything, and takes each
    // number once), so this is its only owner.
    #[allow(unsafe_code)]
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let is_socket = fstat(&owned)
        .map(|stat| SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK)
        .unwrap_or(false);
    if !is_socket {
        // Not ours to close after all: leave it as it was.
        let _ = owned.into_raw_fd();
        return Err(invalid("the inherited descriptor is not a socket"));
    }
    let flags = nix::fcntl::FdFlag::FD_CLOEXEC;
    nix::fcntl::fcntl(&owned, nix::fcntl::FcntlArg::F_SETFD(flags))?;
    Ok(owned)
}

/// The sockets systemd passed by socket activation (`LISTEN_FDS`, for this
/// process: `LISTEN_PID`), in the order of the socket unit's `Listen*`
/// lines; none when the server was not started that way.
pub fn systemd_sockets() -> io::Result<Vec<OwnedFd>> {
    let var = |name| std::env::var(name).ok();
    let for_us =
        var("LISTEN_PID").and_then(|pid| pid.parse::<u32>().ok()) == Some(std::process::id());
    let count = match (for_us, var("LISTEN_FDS")) {
        (true, Some(count)) => count.parse::<RawFd>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("LISTEN_FDS={count:?} is not a number"),
            )
        })?,
        _ => return Ok(Vec::new()),
    };
    (LISTEN_FDS_START..LISTEN_FDS_START.saturating_add(count))
        .map(adopt_socket)
        .collect()
}
