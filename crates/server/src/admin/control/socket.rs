//! The server's side of its control socket: binding `control.PORT.sock`
//! (taking the place of a stale one, never of a live one), serving one
//! request per connection, and removing the file at shutdown.

use std::{
    io,
    os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use echo_proto::ext::{AsyncFrameRead, AsyncFrameWrite};
use tokio::{
    net::{UnixListener, UnixStream},
    time::timeout,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use super::{ControlReply, ControlRequest, Live, run, socket_path};
use crate::{store::UserStore, sys::clock::Clock};

/// Time a control client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request read.
const MAX_REQUEST: usize = 64 * 1024;

/// How long a stopping server waits for the answers to requests it has
/// taken (a reload reads a file; a kick or a store command is quick).
const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// A bound control socket, not yet served.
#[derive(Debug)]
pub struct ControlSocket {
    listener: StdUnixListener,
    path: PathBuf,
    port: u16,
    /// The socket file's inode: the file is removed at the end only if it
    /// is still this one (after an upgrade it is the new process's).
    inode: u64,
}

impl ControlSocket {
    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The port of the server it belongs to (in its name).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Moves a socket bound by [`bind_successor`] to `control.PORT.sock`,
    /// in the place of the old process's: one rename, so that an admin
    /// command reaches the old process or this one, never neither.
    pub fn take_over(&mut self) -> io::Result<()> {
        let target = self
            .path
            .with_file_name(format!("control.{}.sock", self.port));
        std::fs::rename(&self.path, &target)?;
        self.path = target;
        Ok(())
    }
}

/// Binds `DATA_DIR/control.PORT.sock` for the server listening on `port`
/// (the port it got, after any move to the next free one), mode 0600; `dir`
/// is made (0700) if missing, whatever the store. A socket file nothing
/// answers on (left by a server that was killed) is replaced; one a live
/// server answers on is not: this server does not start (two servers on one
/// port of one data directory: another host address). Bound before the
/// server says it is listening, so an admin command right after start
/// reaches it.
pub fn bind(dir: &Path, port: u16) -> io::Result<ControlSocket> {
    let taken = "another echo-server of this data directory answers on it";
    bind_at(dir, socket_path(dir, port), port, taken)
}

/// The control socket of a process started by `echo-server upgrade`,
/// bound while the old process still serves the port and its control
/// socket: `DATA_DIR/control.PORT.next.sock` (a name the admin commands
/// do not list), until [`ControlSocket::take_over`]. A live one means
/// another upgrade of this server is under way: refused.
pub fn bind_successor(dir: &Path, port: u16) -> io::Result<ControlSocket> {
    let path = dir.join(format!("control.{port}.next.sock"));
    let taken = "another upgrade of this server is under way";
    bind_at(dir, path, port, taken)
}

/// Binds `path` as in [`bind`]; `taken` says what a live socket there is.
fn bind_at(dir: &Path, path: PathBuf, port: u16, taken: &str) -> io::Result<ControlSocket> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    crate::sys::files::create_private_dir(dir)?;
    if StdUnixStream::connect(&path).is_ok() {
        return Err(io::Error::new(io::ErrorKind::AddrInUse, taken.to_owned()));
    }
    match std::fs::remove_file(&path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let listener = StdUnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    let inode = std::fs::symlink_metadata(&path)?.ino();
    Ok(ControlSocket {
        listener,
        path,
        port,
        inode,
    })
}

/// Serves the control socket until `stop`, then removes it.
pub(crate) async fn serve<S: UserStore>(
    socket: ControlSocket,
    store: S,
    live: impl Into<Live>,
    min_password_length: usize,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    let mut live = live.into();
    let me = nix::unistd::getuid().as_raw();
    let ControlSocket {
        listener,
        path,
        port,
        inode,
    } = socket;
    live.port = Some(port);
    let listener = match UnixListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            warn!(error = %err, "no control socket: the admin commands will not reach this server");
            return;
        }
    };
    let _removed = RemoveOnDrop(path, inode);
    let answering = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        if !of_user(&stream, me) {
            continue;
        }
        let (store, live, clock) = (store.clone(), live.clone(), Arc::clone(&clock));
        let stop = stop.clone();
        answering.spawn(async move {
            let Some((stream, payload)) = read_request(stream, &stop).await else {
                return;
            };
            answer(
                stream,
                &payload,
                &store,
                &live,
                min_password_length,
                &*clock,
            )
            .await;
        });
    }
    // A request already taken is answered before the server goes: the
    // answer to `upgrade` is sent just after the handover that ends this
    // process, and its caller must hear how it went.
    answering.close();
    let _ = timeout(ANSWER_GRACE, answering.wait()).await;
}

/// Whether the client on `stream` runs as the user `me` (the server's
/// own); a client of another user is logged and refused.
fn of_user(stream: &UnixStream, me: u32) -> bool {
    let uid = stream.peer_cred().map(|cred| cred.uid());
    if uid.as_ref().ok() != Some(&me) {
        warn!(peer_uid = ?uid, "control socket: refused a client of another user");
        return false;
    }
    true
}

/// The request a control client sends, unless it sends none in time or
/// the server stops first (a request not yet sent is not waited for).
async fn read_request(
    mut stream: UnixStream,
    stop: &CancellationToken,
) -> Option<(UnixStream, Vec<u8>)> {
    let read = timeout(REQUEST_TIMEOUT, stream.recv_frame_max(MAX_REQUEST));
    let read = tokio::select! {
        () = stop.cancelled() => return None,
        read = read => read,
    };
    let Ok(Ok(Some(payload))) = read else {
        return None;
    };
    Some((stream, payload))
}

/// Carries out the request `payload` read from `stream`, and replies.
async fn answer<S: UserStore>(
    mut stream: UnixStream,
    payload: &[u8],
    store: &S,
    live: &Live,
    min_password_length: usize,
    clock: &dyn Clock,
) {
    // "Now" is when the request arrived, not when its connection did.
    let now = clock.now();
    let reply = match serde_json::from_slice::<ControlRequest>(payload) {
        Ok(request) => {
            info!(request = request.kind(), "control request");
            let done = run(store, request, min_password_length, now, Some(live)).await;
            match done {
                Ok(output) => ControlReply::Done { output },
                Err(err) => ControlReply::Failed {
                    message: err.to_string(),
                },
            }
        }
        Err(err) => ControlReply::Failed {
            message: format!("not a control request: {err}"),
        },
    };
    let _ = stream.send_msg(&reply).await;
}

/// Removes the socket file when the serving task ends, if it is still
/// this server's (not the one of the process that took the port over).
struct RemoveOnDrop(PathBuf, u64);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let ours = std::fs::symlink_metadata(&self.0).is_ok_and(|meta| meta.ino() == self.1);
        if ours {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}
