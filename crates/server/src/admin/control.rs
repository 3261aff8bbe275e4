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
    store::{EndCause, UserStore},
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

/// What a running server adds to a request: its live registries.
#[derive(Debug, Clone)]
pub struct Live {
    /// Live sessions by chain (revocations end them).
    pub sessions: Arc<LiveSessions>,
    /// Live connections (listed and kicked).
    pub clients: Arc<Clients>,
}

impl From<(Arc<LiveSessions>, Arc<Clients>)> for Live {
    fn from((sessions, clients): (Arc<LiveSessions>, Arc<Clients>)) -> Self {
        Self { sessions, clients }
    }
}

/// A control request that was not carried out, or not answered.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The store refused or failed, or a name or password broke a rule.
    #[error(transparent)]
    Admin(#[from] ops::AdminError),
    /// `clients` or `kick` with no server running.
    #[error("no server is running on this data directory")]
    NotRunning,
    /// `kick ID` of a connection that is not there.
    #[error("no connection {0}")]
    NoConnection(String),
    /// `kick` with both an id and a user, or neither.
    #[error("give a connection id or --user NAME, not both")]
    KickWhom,
    /// The client list could not be written as JSON.
    #[error(transparent)]
    Json(serde_json::Error),
    /// The running server's control socket cannot be reached.
    #[error("cannot reach the running server at {}: {source}", path.display())]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The running server did not answer.
    #[error("the running server did not answer: {0}")]
    NoAnswer(#[source] echo_proto::ProtoError),
    /// The running server closed the socket without an answer.
    #[error("the running server closed the control socket")]
    Closed,
    /// The running server's answer was not a control reply.
    #[error("the running server answered something else: {0}")]
    BadReply(#[source] serde_json::Error),
    /// The running server did not carry the request out: its message.
    #[error("{0}")]
    Failed(String),
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
    live: Option<&Live>,
) -> Result<String, ControlError> {
    let end_sessions = |user: &str, cause: EndCause| {
        if let Some(live) = live {
            live.sessions.revoke_user(user, cause);
        }
    };
    let min = min_password_length;
    Ok(match request {
        ControlRequest::UserAdd { name, password } => {
            ops::add_user(store, &name, password, min, now).await?
        }
        ControlRequest::UserList => ops::list_users(store).await?,
        ControlRequest::UserRemove { name } => {
            let user = stored(store, name).await;
            let done = ops::remove_user(store, &user).await?;
            end_sessions(&user, EndCause::Operator);
            done
        }
        ControlRequest::UserPasswd { name, password } => {
            let user = stored(store, name).await;
            let done = ops::set_password(store, &user, password, min).await?;
            end_sessions(&user, EndCause::PasswordChanged);
            done
        }
        ControlRequest::SessionList { user } => ops::list_sessions(store, &user, now).await?,
        ControlRequest::SessionRevoke { user } => {
            let user = stored(store, user).await;
            let done = ops::revoke_sessions(store, &user).await?;
            end_sessions(&user, EndCause::Operator);
            done
        }
        ControlRequest::Clients { json } => clients(live.ok_or(ControlError::NotRunning)?, json)?,
        ControlRequest::Kick { id, user } => {
            let live = live.ok_or(ControlError::NotRunning)?;
            match (id, user) {
                (Some(id), None) if live.clients.kick_id(&id) => {
                    format!("connection {id} kicked")
                }
                (Some(id), None) => return Err(ControlError::NoConnection(id)),
                (None, Some(user)) => {
                    let user = stored(store, user).await;
                    let count = live.clients.kick_user(&user);
                    format!("{count} connection(s) of {user} kicked")
                }
                _ => return Err(ControlError::KickWhom),
            }
        }
    })
}

/// The user as stored, whatever the spelling given.
async fn stored<S: UserStore>(store: &S, name: String) -> String {
    match store.user(&name).await {
        Ok(Some(record)) => record.name,
        _ => name,
    }
}

/// `clients`: the live connections, as lines or a JSON array.
fn clients(live: &Live, json: bool) -> Result<String, ControlError> {
    let list = live.clients.list();
    if json {
        serde_json::to_string_pretty(&list).map_err(ControlError::Json)
    } else {
        Ok(format_table(&list))
    }
}

/// Sends `request` to the server whose data directory is `dir` and returns
/// what it printed, or why it refused.
pub fn request(dir: &Path, request: &ControlRequest) -> Result<String, ControlError> {
    let path = dir.join(CONTROL_SOCKET);
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(source) => return Err(ControlError::Unreachable { path, source }),
    };
    stream.send_msg(request).map_err(ControlError::NoAnswer)?;
    let Some(payload) = stream.recv_frame().map_err(ControlError::NoAnswer)? else {
        return Err(ControlError::Closed);
    };
    match serde_json::from_slice::<ControlReply>(&payload) {
        Ok(ControlReply::Done { output }) => Ok(output),
        Ok(ControlReply::Failed { message }) => Err(ControlError::Failed(message)),
        Err(err) => Err(ControlError::BadReply(err)),
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
    live: impl Into<Live>,
    min_password_length: usize,
    clock: Arc<dyn crate::sys::clock::Clock>,
    stop: CancellationToken,
) {
    let live = live.into();
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

/// Reads one request from `stream`, carries it out and replies.
async fn answer<S: UserStore>(
    mut stream: UnixStream,
    store: &S,
    live: &Live,
    min_password_length: usize,
    clock: &dyn crate::sys::clock::Clock,
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
