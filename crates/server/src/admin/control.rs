//! Administration of a running server: each server listens on a Unix
//! socket of its own in the data directory, `control.PORT.sock` (its port
//! in the name, so several servers of one directory are each reachable;
//! mode 0600, served only to the server's own user id, checked with
//! `SO_PEERCRED`). `echo-server user …`, `session …`, `ident …`, `clients`,
//! `kick` and `reload` send one [`ControlRequest`] and print the reply;
//! with no server running, the same [`run`] works on the store directly.
//!
//! The socket speaks the main port's framing (a 4-byte length, then JSON):
//! one request, one [`ControlReply`], then the server closes. `socket`
//! is the server's side, `reach` the admin commands'.

mod reach;
mod socket;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use echo_proto::Secret;
use serde::{Deserialize, Serialize};

pub use reach::request;
pub(crate) use socket::serve;
pub use socket::{ControlSocket, bind, bind_successor};

use crate::{
    admin::ops,
    admin::reload::{ReloadError, Reloader},
    live::clients::{Clients, format_table},
    live::sessions::LiveSessions,
    store::{EndCause, UserStore},
};

/// The control socket of the server listening on `port`, in the data
/// directory `dir`: `dir/control.PORT.sock`.
pub fn socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!("control.{port}.sock"))
}

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
    /// `session revoke USER [--id ID]`.
    SessionRevoke {
        /// Whose.
        user: String,
        /// Only this session (its id as `session list` shows it); every
        /// one of the user's without it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// `ident list`.
    IdentList,
    /// `ident forget ADDRESS`.
    IdentForget {
        /// The IP address.
        address: String,
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
    /// `upgrade`: replace the server's process by a new one of the binary
    /// at its path, without closing the port.
    Upgrade,
    /// `reload`: read the config file again and apply it.
    Reload,
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
    /// The server's port, shown with each connection `clients` lists.
    pub port: Option<u16>,
    /// Where `upgrade` is carried out (the binary's upgrader), if anywhere.
    pub upgrades: Option<UpgradeRequests>,
    /// What `reload` asks (none: the server cannot reload).
    pub reloader: Option<Arc<Reloader>>,
}

/// `upgrade` requests, each with where to send its answer: what
/// `echo-server upgrade` prints, or why the new process did not take over.
pub type UpgradeRequests =
    tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Result<String, String>>>;

impl From<(Arc<LiveSessions>, Arc<Clients>)> for Live {
    fn from((sessions, clients): (Arc<LiveSessions>, Arc<Clients>)) -> Self {
        Self {
            sessions,
            clients,
            port: None,
            upgrades: None,
            reloader: None,
        }
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
    /// `reload` was refused: nothing changed.
    #[error("reload refused, nothing changed: {0}")]
    Reload(#[from] ReloadError),
    /// `reload` of a server that was not started with its settings at
    /// hand (a library user's).
    #[error("this server cannot reload its settings")]
    CannotReload,
    /// The client list could not be written as JSON.
    #[error(transparent)]
    Json(serde_json::Error),
    /// No server of the data directory (on the port asked for) answers.
    #[error("{}", not_running(dir, *port))]
    NoServer {
        /// The data directory looked in.
        dir: PathBuf,
        /// The one port asked for, if any.
        port: Option<u16>,
    },
    /// A request for the server holding the store, and several run.
    #[error(
        "{} servers run on the data directory {} (ports {}): name one with --port",
        ports.len(),
        dir.display(),
        ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
    )]
    SeveralServers {
        /// The data directory.
        dir: PathBuf,
        /// Their ports.
        ports: Vec<u16>,
    },
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
        ControlRequest::SessionRevoke { user, id: None } => {
            let user = stored(store, user).await;
            let done = ops::revoke_sessions(store, &user).await?;
            end_sessions(&user, EndCause::Operator);
            done
        }
        ControlRequest::SessionRevoke { user, id: Some(id) } => {
            let user = stored(store, user).await;
            let (chain, done) = ops::revoke_session(store, &user, &id, now).await?;
            if let Some(live) = live {
                live.sessions.revoke_chain(chain, Some(EndCause::Operator));
            }
            done
        }
        ControlRequest::IdentList => ops::list_identities(store, now).await?,
        ControlRequest::IdentForget { address } => ops::forget_identity(store, &address).await?,
        ControlRequest::Clients { json } => clients(live.ok_or(ControlError::NotRunning)?, json)?,
        ControlRequest::Kick { id, user } => {
            kick(store, live.ok_or(ControlError::NotRunning)?, id, user).await?
        }
        ControlRequest::Upgrade => upgrade(live.ok_or(ControlError::NotRunning)?).await?,
        ControlRequest::Reload => reload(live.ok_or(ControlError::NotRunning)?).await?,
    })
}

/// `upgrade`: asks the upgrader and waits for its answer.
async fn upgrade(live: &Live) -> Result<String, ControlError> {
    let failed = |message: &str| ControlError::Failed(message.to_owned());
    let upgrades = live
        .upgrades
        .as_ref()
        .ok_or_else(|| failed("this server cannot be upgraded (not the echo-server binary)"))?;
    let (answer, answered) = tokio::sync::oneshot::channel();
    let gone = "this server is handing the port over to a new process already";
    upgrades.send(answer).await.map_err(|_| failed(gone))?;
    answered
        .await
        .map_err(|_| failed(gone))?
        .map_err(ControlError::Failed)
}

/// `reload`: this server's settings read again and applied; what changed.
async fn reload(live: &Live) -> Result<String, ControlError> {
    let reloader = live.reloader.clone().ok_or(ControlError::CannotReload)?;
    // A file read and a PEM parse: off the async workers.
    let reloading = tokio::task::spawn_blocking(move || reloader.reload("control"));
    let reloaded = reloading.await.map_err(|_| ControlError::CannotReload)?;
    Ok(reloaded?.to_string())
}

/// `kick ID` or `kick --user NAME` on this server's connections.
async fn kick<S: UserStore>(
    store: &S,
    live: &Live,
    id: Option<String>,
    user: Option<String>,
) -> Result<String, ControlError> {
    match (id, user) {
        (Some(id), None) if live.clients.kick_id(&id) => Ok(format!("connection {id} kicked")),
        (Some(id), None) => Err(ControlError::NoConnection(id)),
        (None, Some(user)) => {
            let user = stored(store, user).await;
            let count = live.clients.kick_user(&user);
            Ok(format!("{count} connection(s) of {user} kicked"))
        }
        _ => Err(ControlError::KickWhom),
    }
}

/// The user as stored, whatever the spelling given.
async fn stored<S: UserStore>(store: &S, name: String) -> String {
    match store.user(&name).await {
        Ok(Some(record)) => record.name,
        _ => name,
    }
}

/// The sentence for [`ControlError::NoServer`].
fn not_running(dir: &Path, port: Option<u16>) -> String {
    match port {
        Some(port) => format!(
            "no echo-server on port {port} is running on the data directory {} (nothing answers on control.{port}.sock there)",
            dir.display()
        ),
        None => format!(
            "no echo-server is running on the data directory {} (no control socket there answers)",
            dir.display()
        ),
    }
}

/// `clients`: the live connections, as lines or a JSON array.
fn clients(live: &Live, json: bool) -> Result<String, ControlError> {
    let mut list = live.clients.list();
    for client in &mut list {
        client.port = live.port;
    }
    if json {
        serde_json::to_string_pretty(&list).map_err(ControlError::Json)
    } else {
        Ok(format_table(&list))
    }
}

impl ControlRequest {
    /// Whether every live server of the data directory is asked (`clients`,
    /// `kick`: each has its own connections; `reload`: each its own
    /// settings), not just the store's holder.
    pub fn reaches_every_server(&self) -> bool {
        matches!(
            self,
            ControlRequest::Clients { .. } | ControlRequest::Kick { .. } | ControlRequest::Reload
        )
    }

    /// The request's name, for the log (never its password).
    pub fn kind(&self) -> &'static str {
        match self {
            ControlRequest::UserAdd { .. } => "user_add",
            ControlRequest::UserList => "user_list",
            ControlRequest::UserRemove { .. } => "user_remove",
            ControlRequest::UserPasswd { .. } => "user_passwd",
            ControlRequest::SessionList { .. } => "session_list",
            ControlRequest::SessionRevoke { .. } => "session_revoke",
            ControlRequest::IdentList => "ident_list",
            ControlRequest::IdentForget { .. } => "ident_forget",
            ControlRequest::Clients { .. } => "clients",
            ControlRequest::Kick { .. } => "kick",
            ControlRequest::Upgrade => "upgrade",
            ControlRequest::Reload => "reload",
        }
    }
}
