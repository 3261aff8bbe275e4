//! [`Record`]: one change to the journal store, as a line of its journal;
//! the state applies them.

use std::net::IpAddr;

use serde::Deserialize;
use uuid::Uuid;

use crate::store::UnixTime;

/// One change, as a line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Record {
    /// A user, created or with a new password hash.
    User {
        name: String,
        hash: String,
        created: UnixTime,
    },
    /// A user removed, with their sessions.
    UserDel { name: String },
    /// An IP address's name.
    Ident {
        ip: IpAddr,
        name: String,
        seen: UnixTime,
    },
    /// An IP address's name forgotten (`echo-server ident forget`).
    IdentDel { ip: IpAddr },
    /// A session chain started, or rotated to a new current token.
    Session {
        /// The chain; stored as `family`, its older name (the journal's
        /// format is kept).
        #[serde(rename = "family")]
        chain: Uuid,
        user: String,
        token: String,
        created: UnixTime,
        used: UnixTime,
        /// Tokens rotated away (only in compacted journals).
        #[serde(default)]
        rotated: Vec<String>,
    },
    /// A session chain revoked.
    Revoke {
        /// The chain; stored as `family` (see `Session`).
        #[serde(rename = "family")]
        chain: Uuid,
    },
    /// Every session chain of a user revoked.
    RevokeUser { name: String },
    /// An account (canonical name) logged in from a source (its
    /// [`Source::address`](crate::sys::peer::Source::address)). Journals
    /// from before it have none: their accounts start with no familiar
    /// source.
    Familiar {
        account: String,
        source: IpAddr,
        seen: UnixTime,
    },
}
