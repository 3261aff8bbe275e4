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
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{ControlReply, ControlRequest, Live, run, socket_path};
use crate::{store::UserStore, sys::clock::Clock};

/// Time a control client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request read.
const MAX_REQUEST: usize = 64 * 1024;

/// A bound control socket, not yet served.
#[derive(Debug)]
pub struct ControlSocket {
    listener: StdUnixListener,
    path: PathBuf,
    port: u16,
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
    use std::os::unix::fs::PermissionsExt;
    crate::sys::files::create_private_dir(dir)?;
    let path = socket_path(dir, port);
    if StdUnixStream::connect(&path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another echo-server of this data directory answers on it",
        ));
    }
    match std::fs::remove_file(&path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let listener = StdUnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(ControlSocket {
        listener,
        path,
        port,
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
    } = socket;
    live.port = Some(port);
    let listener = match UnixListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            warn!(error = %err, "no control socket: the admin commands will not reach this server");
            return;
        }
    };
    let _removed = RemoveOnDrop(path);
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let uid = stream.peer_cred().map(|cred| cred.uid());
        if uid.as_ref().ok() != Some(&me) {
            warn!(peer_uid = ?uid, "control socket: refused a client of another user");
            continue;
        }
        let (store, live, clock) = (store.clone(), live.clone(), Arc::clone(&clock));
        tokio::spawn(async move {
            answer(stream, &store, &live, min_password_length, &*clock).await;
        });
    }
}

/// Reads one request from `stream`, carries it out and replies.
async fn answer<S: UserStore>(
    mut stream: UnixStream,
    store: &S,
    live: &Live,
    min_password_length: usize,
    clock: &dyn Clock,
) {
    let read = timeout(REQUEST_TIMEOUT, stream.recv_frame_max(MAX_REQUEST));
    let Ok(Ok(Some(payload))) = read.await else {
        return;
    };
    // "Now" is when the request arrived, not when its connection did.
    let now = clock.now();
    let reply = match serde_json::from_slice::<ControlRequest>(&payload) {
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

/// Removes the socket file when the serving task ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
