//! Administration of a running server: a Unix socket in the data directory
//! (`control.sock`, mode 0600, served only to the server's own user id,
//! checked with `SO_PEERCRED`). `echo-server user …`, `session …`,
//! `clients` and `kick` send one [`ControlRequest`] and print the reply;
//! with no server running, the same [`run`] works on the store directly.
//!
//! The socket speaks the main port's framing (a 4-byte length, then JSON):
//! one request, one [`ControlReply`], then the server closes.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use echo_proto::{
    Secret,
    ext::{AsyncFrameRead, AsyncFrameWrite, BlockingFrameRead, BlockingFrameWrite},
};
use serde::{Deserialize, Serialize};
use tokio::{
    net::{UnixListener, UnixStream},
    time::timeout,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    admin::ops,
    live::clients::{Clients, format_table},
    live::sessions::LiveSessions,
    store::UserStore,
};

/// File name of the control socket in the data directory.
pub const CONTROL_SOCKET: &str = "control.sock";
/// Time a control client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request read.
const MAX_REQUEST: usize = 64 * 1024;

/// One administration request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlRequest {
    /// `user add NAME`.
    UserAdd {
        /// The name.
        name: String,
        /// The password.
        password: Secret,
    },
    /// `user list`.
    UserList,
    /// `user remove NAME`.
    UserRemove {
        /// The name.
        name: String,
    },
    /// `user passwd NAME`.
    UserPasswd {
        /// The name.
        name: String,
        /// The new password.
        password: Secret,
    },
    /// `session list USER`.
    SessionList {
        /// Whose.
        user: String,
    },
    /// `session revoke USER`.
    SessionRevoke {
        /// Whose.
        user: String,
    },
    /// `clients [--json]`.
    Clients {
        /// A JSON array instead of lines.
        json: bool,
    },
    /// `kick ID` or `kick --user NAME`.
    Kick {
        /// The connection id.
        id: Option<String>,
        /// Every connection of this user.
        user: Option<String>,
    },
}

/// The answer to one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlReply {
    /// Done; `output` is what the command prints.
    Done {
        /// The text to print.
        output: String,
    },
    /// Not done; `message` says why.
    Failed {
        /// A sentence for people.
        message: String,
    },
}

/// What a running server adds to a request: its live connections.
#[derive(Debug, Clone, Copy)]
pub struct Live<'a> {
    /// Live sessions by chain (revocations end them).
    pub sessions: &'a LiveSessions,
    /// Live connections (listed and kicked).
    pub clients: &'a Clients,
}

/// Carries out `request` on `store`; `live` is the running server's side
/// (none for a stopped server: `clients` and `kick` then fail). Changes to a
/// user's password or sessions end that user's live connections with
/// `bye {revoked}`.
pub async fn run<S: UserStore>(
    store: &S,
    request: ControlRequest,
    min_password_length: usize,
    now: u64,
    live: Option<Live<'_>>,
) -> Result<String, String> {
    let failed = |err: ops::AdminError| err.to_string();
    let stored = |name: String| stored_name(store, name);
    let end_sessions = |user: &str| {
        if let Some(live) = live {
            live.sessions.revoke_user(user);
        }
    };
    match request {
        ControlRequest::UserAdd { name, password } => {
            ops::add_user(store, &name, password, min_password_length, now)
                .await
                .map_err(failed)
        }
        ControlRequest::UserList => ops::list_users(store).await.map_err(failed),
        ControlRequest::UserRemove { name } => {
            let user = stored(name).await;
            let done = ops::remove_user(store, &user).await.map_err(failed)?;
            end_sessions(&user);
            Ok(done)
        }
        ControlRequest::UserPasswd { name, password } => {
            let user = stored(name).await;
            let done = ops::set_password(store, &user, password, min_password_length)
                .await
                .map_err(failed)?;
            end_sessions(&user);
            Ok(done)
        }
        ControlRequest::SessionList { user } => {
            ops::list_sessions(store, &user, now).await.map_err(failed)
        }
        ControlRequest::SessionRevoke { user } => {
            let user = stored(user).await;
            let done = ops::revoke_sessions(store, &user).await.map_err(failed)?;
            end_sessions(&user);
            Ok(done)
        }
        ControlRequest::Clients { json } => list_clients(live.ok_or_else(not_running)?, json),
        ControlRequest::Kick { id, user } => {
            let live = live.ok_or_else(not_running)?;
            let user = match user {
                Some(user) => Some(stored(user).await),
                None => None,
            };
            kick(live, id, user)
        }
    }
}

/// The user as stored, whatever the spelling given.
async fn stored_name<S: UserStore>(store: &S, name: String) -> String {
    match store.user(&name).await {
        Ok(Some(record)) => record.name,
        _ => name,
    }
}

/// The live connections, as a table or as JSON.
fn list_clients(live: Live<'_>, json: bool) -> Result<String, String> {
    let list = live.clients.list();
    if json {
        serde_json::to_string_pretty(&list).map_err(|err| err.to_string())
    } else {
        Ok(format_table(&list))
    }
}

/// Ends one connection (by id) or every connection of `user` (as stored).
fn kick(live: Live<'_>, id: Option<String>, user: Option<String>) -> Result<String, String> {
    match (id, user) {
        (Some(id), None) if live.clients.kick_id(&id) => Ok(format!("connection {id} kicked")),
        (Some(id), None) => Err(format!("no connection {id}")),
        (None, Some(user)) => {
            let count = live.clients.kick_user(&user);
            Ok(format!("{count} connection(s) of {user} kicked"))
        }
        _ => Err("give a connection id or --user NAME, not both".into()),
    }
}

fn not_running() -> String {
    "no server is running on this data directory".into()
}

/// Sends `request` to the server whose data directory is `dir` and returns
/// what it printed, or why it refused.
pub fn request(dir: &Path, request: &ControlRequest) -> Result<String, String> {
    let path = dir.join(CONTROL_SOCKET);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).map_err(|err| {
        format!(
            "cannot reach the running server at {}: {err}",
            path.display()
        )
    })?;
    let lost = |err: echo_proto::ProtoError| format!("the running server did not answer: {err}");
    stream.send_msg(request).map_err(lost)?;
    let Some(payload) = stream.recv_frame().map_err(lost)? else {
        return Err("the running server closed the control socket".into());
    };
    match serde_json::from_slice::<ControlReply>(&payload) {
        Ok(ControlReply::Done { output }) => Ok(output),
        Ok(ControlReply::Failed { message }) => Err(message),
        Err(err) => Err(format!("the running server answered something else: {err}")),
    }
}

/// A bound control socket, not yet served.
#[derive(Debug)]
pub struct ControlSocket {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
}

/// Binds the control socket in `dir`, the data directory of this process
/// (so no other server uses the socket: a file left there is stale and
/// replaced), with mode 0600; `dir` is made (0700) if missing, whatever the
/// store. Bound before the server says it is listening, so an admin command
/// right after start reaches it.
pub fn bind(dir: &Path) -> std::io::Result<ControlSocket> {
    use std::os::unix::fs::PermissionsExt;
    crate::sys::files::create_private_dir(dir)?;
    let path = dir.join(CONTROL_SOCKET);
    match std::fs::remove_file(&path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(ControlSocket { listener, path })
}

impl ControlSocket {
    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Serves the control socket until `stop`, then removes it.
pub(crate) async fn serve<S: UserStore>(
    socket: ControlSocket,
    store: S,
    live: (Arc<LiveSessions>, Arc<Clients>),
    min_password_length: usize,
    clock: Arc<dyn crate::sys::clock::Clock>,
    stop: CancellationToken,
) {
    let me = nix::unistd::getuid().as_raw();
    let ControlSocket { listener, path } = socket;
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

/// Reads one request from `stream`, carries it out and writes the reply;
/// a client that sends nothing in time gets none.
async fn answer<S: UserStore>(
    mut stream: UnixStream,
    store: &S,
    live: &(Arc<LiveSessions>, Arc<Clients>),
    min_password_length: usize,
    clock: &dyn crate::sys::clock::Clock,
) {
    let read = timeout(REQUEST_TIMEOUT, stream.recv_frame_max(MAX_REQUEST));
    let Ok(Ok(Some(payload))) = read.await else {
        return;
    };
    let reply = match serde_json::from_slice::<ControlRequest>(&payload) {
        Ok(request) => {
            info!(request = request.kind(), "control request");
            let live = Live {
                sessions: &live.0,
                clients: &live.1,
            };
            let now = clock.now();
            match run(store, request, min_password_length, now, Some(live)).await {
                Ok(output) => ControlReply::Done { output },
                Err(message) => ControlReply::Failed { message },
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

impl ControlRequest {
    /// The request's name, for the log (never its password).
    pub fn kind(&self) -> &'static str {
        match self {
            ControlRequest::UserAdd { .. } => "user_add",
            ControlRequest::UserList => "user_list",
            ControlRequest::UserRemove { .. } => "user_remove",
            ControlRequest::UserPasswd { .. } => "user_passwd",
            ControlRequest::SessionList { .. } => "session_list",
            ControlRequest::SessionRevoke { .. } => "session_revoke",
            ControlRequest::Clients { .. } => "clients",
            ControlRequest::Kick { .. } => "kick",
        }
    }
}
