//! The live connections of this server, for `echo-server clients` and
//! `echo-server kick` (like Redis' `CLIENT LIST` and `CLIENT KILL`). Each
//! connection registers when its session starts and holds a [`Registered`]
//! guard that takes it out again on every path.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{
    live::sessions::{StopReason, Stopper},
    ops::logging::shown_max,
    sys::clock::UnixTime,
    sys::peer::{ConnectionId, Peer},
    sys::sync::lock,
};

/// Every live connection.
#[derive(Debug, Default)]
pub struct Clients {
    entries: Mutex<HashMap<String, Arc<ClientEntry>>>,
}

/// What is known about one live connection.
#[derive(Debug)]
pub struct ClientEntry {
    id: ConnectionId,
    peer: Peer,
    since: UnixTime,
    /// The identified or authenticated name, once known.
    name: Mutex<Option<String>>,
    state: Mutex<Stage>,
    /// `say` messages served so far (as last published).
    pub messages: AtomicU64,
    /// Stops the connection (a kick; a revocation shares it).
    stopper: Stopper,
}

/// One line of `echo-server clients`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The connection id, as in the log.
    pub id: String,
    /// The client's address (and the proxy's, if any).
    pub peer: String,
    /// The identified or authenticated name.
    pub user: Option<String>,
    /// `handshake` or `echo`.
    pub state: Stage,
    /// When it connected (Unix seconds).
    pub since: UnixTime,
    /// `say` messages served.
    pub messages: u64,
    /// The port of the server it is connected to (filled in by the control
    /// socket, which knows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// Where a live connection is: shown as `handshake` or `echo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Identifying or authenticating.
    Handshake,
    /// Established: echoing.
    Echo,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Handshake => "handshake",
            Stage::Echo => "echo",
        })
    }
}

/// Keeps a connection listed; takes it out when dropped.
#[derive(Debug)]
pub struct Registered {
    clients: Arc<Clients>,
    entry: Arc<ClientEntry>,
}

impl Clients {
    /// Lists connection `id` from `peer`, connected at `now`; its stopper
    /// is within the connection's `shutdown` token.
    pub fn register(
        self: &Arc<Self>,
        id: ConnectionId,
        peer: Peer,
        now: UnixTime,
        shutdown: &CancellationToken,
    ) -> Registered {
        let entry = Arc::new(ClientEntry {
            id,
            peer,
            since: now,
            name: Mutex::new(None),
            state: Mutex::new(Stage::Handshake),
            messages: AtomicU64::new(0),
            stopper: Stopper::within(shutdown),
        });
        lock(&self.entries).insert(id.to_string(), Arc::clone(&entry));
        Registered {
            clients: Arc::clone(self),
            entry,
        }
    }

    /// The live connections, oldest first.
    pub fn list(&self) -> Vec<ClientInfo> {
        let mut list: Vec<ClientInfo> = lock(&self.entries)
            .values()
            .map(|entry| entry.info())
            .collect();
        list.sort_by(|a, b| (a.since, &a.id).cmp(&(b.since, &b.id)));
        list
    }

    /// Ends connection `id`; false if there is none.
    pub fn kick_id(&self, id: &str) -> bool {
        let entry = lock(&self.entries).get(id).cloned();
        entry.is_some_and(|entry| {
            entry.stopper.stop(StopReason::Kicked);
            true
        })
    }

    /// Ends every connection of `user`; returns how many.
    pub fn kick_user(&self, user: &str) -> usize {
        let entries: Vec<Arc<ClientEntry>> = lock(&self.entries)
            .values()
            .filter(|entry| lock(&entry.name).as_deref() == Some(user))
            .cloned()
            .collect();
        for entry in &entries {
            entry.stopper.stop(StopReason::Kicked);
        }
        entries.len()
    }
}

impl ClientEntry {
    fn info(&self) -> ClientInfo {
        ClientInfo {
            id: self.id.to_string(),
            peer: self.peer.to_string(),
            user: lock(&self.name).clone(),
            state: *lock(&self.state),
            since: self.since,
            messages: self.messages.load(Ordering::Relaxed),
            port: None,
        }
    }

    /// The client is established as `name`.
    pub fn established(&self, name: &str) {
        *lock(&self.name) = Some(name.to_owned());
        *lock(&self.state) = Stage::Echo;
    }

    /// What stops this connection from outside.
    pub fn stopper(&self) -> &Stopper {
        &self.stopper
    }
}

impl Registered {
    /// The listed connection.
    pub fn entry(&self) -> &Arc<ClientEntry> {
        &self.entry
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.clients.entries).remove(&self.entry.id.to_string());
    }
}

/// `echo-server clients`' table: one line per connection.
pub fn format_table(list: &[ClientInfo]) -> String {
    if list.is_empty() {
        // An empty answer would look like a command that did nothing.
        return "no clients connected\n".to_owned();
    }
    let mut out = String::new();
    for client in list {
        let user = client.user.as_deref().unwrap_or("-");
        let port = client
            .port
            .map_or_else(String::new, |port| format!("\tport {port}"));
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\tsince {}\tmessages {}{port}",
            client.id,
            client.peer,
            shown_max(user, 64),
            client.state,
            crate::sys::clock::format_time(client.since),
            client.messages
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_listed_kicked_and_forgotten() {
        let clients = Arc::new(Clients::default());
        let peer = Peer::direct("192.0.2.1:5000".parse().unwrap());
        let (a, b) = (ConnectionId::random(), ConnectionId::random());
        let first = clients.register(a, peer, 10, &CancellationToken::new());
        let second = clients.register(b, peer, 20, &CancellationToken::new());
        first.entry().established("ann");
        second.entry().messages.store(3, Ordering::Relaxed);
        let list = clients.list();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].user.as_deref(), Some("ann"));
        assert_eq!((list[1].state, list[1].messages), (Stage::Handshake, 3));
        assert_eq!(list[1].state.to_string(), "handshake");
        assert!(format_table(&list).contains("192.0.2.1:5000\tann\techo"));
        assert_eq!(format_table(&[]), "no clients connected\n");
        assert_eq!(clients.kick_user("ann"), 1);
        assert_eq!(first.entry().stopper().reason(), Some(StopReason::Kicked));
        assert!(clients.kick_id(&b.to_string()));
        assert!(!clients.kick_id("00000000"));
        drop((first, second));
        assert!(clients.list().is_empty());
    }
}
