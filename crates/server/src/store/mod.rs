//! The user store: users, identities (IP → name) and sessions, behind the
//! [`UserStore`] trait so that the connection handlers never know how data
//! is kept. [`SqliteStore`] is the embedded default (one file that every
//! process on the machine shares); [`PgStore`], for servers on several
//! machines, implements the same trait, and both pass the same
//! conformance suite (`crates/testkit/src/conformance/`).
//!
//! [`open`] picks the store from the configuration at run time and returns a
//! [`Store`], which dispatches to the chosen backend.

mod any;
pub mod ledger;
pub mod postgres;
mod revocation;
mod sql;
pub mod sqlite;
mod timed;

use std::{fmt, future::Future, net::IpAddr};

use tokio::sync::broadcast;

pub use any::{Store, StoreLocation, log_import, open};
pub use postgres::{PgLedger, PgOptions, PgStore, PgUrl};
pub use revocation::{EndCause, Revocation};
use sha2::{Digest, Sha256};
pub use sqlite::{JOURNAL_FILE, SqliteLedger, SqliteStore};
pub use timed::Timed;
use uuid::Uuid;

pub use crate::sys::clock::UnixTime;

/// Resumes one session chain may have: with every rotated-away token kept
/// for the life of the chain (so that any of them presented again is caught
/// as reuse), this bounds what a chain holds. The next resume ends the chain
/// as expired: the user logs in again.
pub const MAX_ROTATIONS_PER_CHAIN: usize = 100_000;

/// How long a source an account logged in from stays familiar after the
/// last login from it ([`UserStore::familiar_since`]).
pub const FAMILIAR_SOURCE_SECS: u64 = 90 * 86_400;

/// Familiar sources kept per account: a login from one more forgets the
/// one logged in from longest ago.
pub const MAX_FAMILIAR_SOURCES: usize = 64;

/// A registered user.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// User name.
    pub name: String,
    /// Argon2id PHC string of the password.
    pub password_hash: String,
    /// When the user was created.
    pub created: UnixTime,
}

/// The name known for an address (identification mode, lab task 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The name the client gave.
    pub name: String,
    /// When the address was last seen.
    pub seen: UnixTime,
}

/// The SHA-256 of a session token: all the store ever keeps of a token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

/// A live session (one chain of rotated tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The chain's id, the same across rotations.
    pub chain: Uuid,
    /// Whose session it is.
    pub user: String,
    /// When the chain started (the login or registration).
    pub created: UnixTime,
    /// When a token of the chain was last issued.
    pub last_used: UnixTime,
    /// When the current token stops working unless used before.
    pub expires: UnixTime,
}

/// How long sessions and identities live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Seconds a token stays valid without use.
    pub idle: u64,
    /// Seconds a chain stays valid after its login, however used.
    pub absolute: u64,
    /// Seconds an address's name is kept after it was last seen.
    pub identity: u64,
}

/// The outcome of presenting a token for rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: the chain now has the new token.
    Rotated(SessionInfo),
    /// The token had already been rotated away: someone holds a copy, so
    /// the whole chain has been revoked.
    Reused {
        /// Whose chain it was.
        user: String,
        /// The revoked chain.
        chain: Uuid,
    },
    /// The chain has expired (and is now forgotten).
    Expired {
        /// Whose chain it was.
        user: String,
        /// The expired chain.
        chain: Uuid,
    },
    /// No chain knows this token.
    Unknown,
}

/// Store failures, in kinds that fit any backend. None of them carries a
/// password, hash or token.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create_user` with a name that exists.
    #[error("user {0:?} already exists")]
    NameTaken(String),
    /// An operation on a user that does not exist.
    #[error("no user {0:?}")]
    NoSuchUser(String),
    /// A process of the previous release still holds its journal store
    /// (its lock), so the journal cannot be imported yet.
    #[error(
        "the journal store {what} is in use by another echo-server process (an older one): stop it first"
    )]
    InUse {
        /// What is held: the journal store's lock file.
        what: String,
    },
    /// Stored data could not be read: damaged, or from a newer version.
    #[error("corrupt store {what}: {message}")]
    Corrupt {
        /// Where: the file and line, or the table.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing failed; nothing was changed.
    #[error("store I/O error on {what}: {source}")]
    Io {
        /// The file, directory or connection.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The store cannot be reached now (a database that is down); trying
    /// again later may work. Nothing was changed.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The database refused a request (not because it is down).
    #[error("database error: {0}")]
    Database(String),
    /// Text the store cannot hold (PostgreSQL: a NUL character, or one its
    /// encoding lacks). Nothing was changed; a lookup by such text finds
    /// nothing instead.
    #[error("the store cannot hold this text: {0}")]
    InvalidText(String),
    /// The database's schema is newer than this binary.
    #[error(
        "the database schema is at version {found}, newer than this echo-server knows ({known}): upgrade echo-server"
    )]
    SchemaTooNew {
        /// The newest version applied to the database.
        found: i32,
        /// The newest version this binary knows.
        known: i32,
    },
    /// An earlier write failure left the store unable to write safely.
    #[error("the store stopped writing after an earlier failure; restart the server")]
    Poisoned,
}

/// What connection handlers and the admin commands need from a store.
/// Implementations are cheap `Clone` handles onto shared state. A method
/// that changes something returns only once the change is durable.
pub trait UserStore: Clone + Send + Sync + 'static {
    /// The name remembered for `ip`, unless it was last seen longer than
    /// [`Lifetimes::identity`] before `now`.
    fn identity(
        &self,
        ip: IpAddr,
        now: UnixTime,
    ) -> impl Future<Output = Result<Option<Identity>, StoreError>> + Send;

    /// Remembers `name` for `ip`, seen at `now`.
    fn remember_identity(
        &self,
        ip: IpAddr,
        name: &str,
        now: UnixTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every address whose name is still kept at `now`, by address.
    fn identities(
        &self,
        now: UnixTime,
    ) -> impl Future<Output = Result<Vec<(IpAddr, Identity)>, StoreError>> + Send;

    /// Forgets the name remembered for `ip`; false if none was.
    fn forget_identity(&self, ip: IpAddr) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Remembers `name` for `ip` as a hint: the user last authenticated
    /// from the address, or a returning visitor's day. A store may make it
    /// durable lazily (a crash may lose the latest ones); by default it is
    /// [`UserStore::remember_identity`].
    fn note_visit(
        &self,
        ip: IpAddr,
        name: &str,
        now: UnixTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.remember_identity(ip, name, now)
    }

    /// When `account` (a canonical name) last logged in with its password
    /// from the source of `ip` (`Source::of`),
    /// unless that was [`FAMILIAR_SOURCE_SECS`] or longer before `now`.
    fn familiar_since(
        &self,
        account: &str,
        ip: IpAddr,
        now: UnixTime,
    ) -> impl Future<Output = Result<Option<UnixTime>, StoreError>> + Send;

    /// Remembers that `account` logged in from the source of `ip` at `now`
    /// (at most [`MAX_FAMILIAR_SOURCES`] sources per account, the latest).
    fn note_familiar(
        &self,
        account: &str,
        ip: IpAddr,
        now: UnixTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The user called `name`.
    fn user(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send;

    /// Every user, by name.
    fn users(&self) -> impl Future<Output = Result<Vec<UserRecord>, StoreError>> + Send;

    /// Adds a user; [`StoreError::NameTaken`] if the name exists.
    fn create_user(&self, user: UserRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds a user and starts their first session chain, in one change: both
    /// or neither are stored. [`StoreError::NameTaken`] if the name exists.
    fn register(
        &self,
        user: UserRecord,
        token: TokenHash,
    ) -> impl Future<Output = Result<SessionInfo, StoreError>> + Send;

    /// Replaces a user's password hash and revokes all of their sessions.
    fn set_password(
        &self,
        name: &str,
        password_hash: String,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes a user and their sessions (their identities stay).
    fn remove_user(&self, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Starts a session chain for `user` whose current token is `token`.
    fn create_session(
        &self,
        token: TokenHash,
        user: &str,
        now: UnixTime,
    ) -> impl Future<Output = Result<SessionInfo, StoreError>> + Send;

    /// Replaces `presented` by `next` if `presented` is the current token of
    /// a live chain; see [`Rotation`] for the other outcomes.
    fn rotate_session(
        &self,
        presented: TokenHash,
        next: TokenHash,
        now: UnixTime,
    ) -> impl Future<Output = Result<Rotation, StoreError>> + Send;

    /// Revokes one chain for `cause` (which a shared store announces with
    /// it); false if it did not exist.
    fn revoke_session(
        &self,
        chain: Uuid,
        cause: EndCause,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Revokes every chain of `user`; returns how many there were.
    fn revoke_user_sessions(
        &self,
        user: &str,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// The live chains of `user`.
    fn sessions(
        &self,
        user: &str,
        now: UnixTime,
    ) -> impl Future<Output = Result<Vec<SessionInfo>, StoreError>> + Send;

    /// Those of `chains` that still exist (not revoked, not forgotten).
    fn chains_alive(
        &self,
        chains: Vec<Uuid>,
    ) -> impl Future<Output = Result<Vec<Uuid>, StoreError>> + Send;

    /// Chains ended outside this process, for a store that several
    /// processes share; `None` when nobody else can end them.
    fn revocations(&self) -> Option<broadcast::Receiver<Revocation>> {
        None
    }

    /// Resolves once revocations from elsewhere are being heard (at once
    /// for a store nobody else shares); the server waits for it, up to a
    /// limit, before it serves.
    fn hearing_revocations(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// Whether the store is known to be unreachable now (`/healthz` says
    /// so); an embedded store never is.
    fn is_unreachable(&self) -> bool {
        false
    }
}

impl TokenHash {
    /// Hashes a token.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Compares in time independent of where the hashes differ.
    pub fn ct_eq(&self, other: &Self) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }

    fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("name", &self.name)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl Lifetimes {
    /// Whether an identity last seen at `seen` is still kept at `now`.
    pub fn identity_kept(&self, seen: UnixTime, now: UnixTime) -> bool {
        seen.saturating_add(self.identity) > now
    }

    /// When a chain started at `created` and last used at `last_used` expires.
    pub fn expires(&self, created: UnixTime, last_used: UnixTime) -> UnixTime {
        created
            .saturating_add(self.absolute)
            .min(last_used.saturating_add(self.idle))
    }
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            idle: 7 * 86_400,
            absolute: 30 * 86_400,
            identity: 365 * 86_400,
        }
    }
}
