//! The store chosen at run time: [`StoreLocation`] says which backend the
//! configuration names, [`open`] opens it, and [`Store`] passes each call
//! to it (an enum, not a trait object: [`UserStore`]'s async methods are
//! generic, and a `match` per call costs nothing next to the work behind it).

use std::{fmt, net::IpAddr, path::PathBuf, sync::Arc};

use uuid::Uuid;

use tokio::sync::broadcast;

use super::sqlite::Imported;
use super::{
    EndCause, Identity, Lifetimes, PgOptions, PgStore, PgUrl, Revocation, Rotation, SessionInfo,
    SqliteStore, StoreError, TokenHash, UnixTime, UserRecord, UserStore,
};
use crate::store::ledger::AttemptLedger;

/// Where the configuration says the store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The SQLite database in this file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, shared by any number of servers.
    Postgres {
        /// Where it is.
        url: Box<PgUrl>,
        /// Its pool's size and its calls' deadline.
        options: PgOptions,
    },
}

impl fmt::Display for StoreLocation {
    /// As the `--store` flag takes it: `file`, or the URL with its password
    /// hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            StoreLocation::Postgres { url, .. } => write!(f, "{url}"),
        }
    }
}

/// An open store of whichever backend was configured.
#[derive(Debug, Clone)]
pub enum Store {
    /// The SQLite store.
    Sqlite(SqliteStore),
    /// The PostgreSQL store.
    Postgres(PgStore),
}

/// Opens the store at `location` (for PostgreSQL: connects and brings the
/// schema up to date).
pub async fn open(location: &StoreLocation, lifetimes: Lifetimes) -> Result<Store, StoreError> {
    match location {
        StoreLocation::Sqlite(path) => open_sqlite(path, lifetimes).await.map(Store::Sqlite),
        StoreLocation::Postgres { url, options } => PgStore::open_with(url, lifetimes, *options)
            .await
            .map(Store::Postgres),
    }
}

/// Opens the SQLite store at `path`, importing the previous release's
/// journal found beside it (`store.journal`) when the database is new.
async fn open_sqlite(
    path: &std::path::Path,
    lifetimes: Lifetimes,
) -> Result<SqliteStore, StoreError> {
    let store = SqliteStore::open(path, lifetimes).await?;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    store.import_beside(dir).await?;
    Ok(store)
}

impl Store {
    /// What the store imported when it was opened (the journal store of an
    /// older release), and where the journal went.
    pub fn imported(&self) -> Option<(Imported, PathBuf)> {
        match self {
            Store::Sqlite(store) => store.imported(),
            Store::Postgres(_) => None,
        }
    }
}

/// Logs an import ([`Store::imported`]), once logging is set up.
pub fn log_import((imported, renamed): &(Imported, PathBuf)) {
    tracing::info!(
        users = imported.users,
        sessions = imported.sessions,
        tokens = imported.tokens,
        identities = imported.identities,
        familiar_sources = imported.familiar,
        second_spellings_left_out = imported.skipped_users,
        renamed_to = %renamed.display(),
        "imported the journal store into SQLite"
    );
}

impl Store {
    /// The attempt ledger this store shares with other servers; `None` for
    /// a store only this process uses (its limits stay in memory).
    pub fn shared_ledger(&self) -> Option<Arc<dyn AttemptLedger>> {
        match self {
            Store::Sqlite(store) => Some(Arc::new(store.ledger())),
            Store::Postgres(store) => Some(Arc::new(store.ledger())),
        }
    }
}

/// Runs the same call on whichever backend this is.
macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Sqlite($store) => $call.await,
            Store::Postgres($store) => $call.await,
        }
    };
}

impl UserStore for Store {
    async fn identity(&self, ip: IpAddr, now: UnixTime) -> Result<Option<Identity>, StoreError> {
        dispatch!(self, s => s.identity(ip, now))
    }

    async fn remember_identity(
        &self,
        ip: IpAddr,
        name: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.remember_identity(ip, name, now))
    }

    async fn identities(&self, now: UnixTime) -> Result<Vec<(IpAddr, Identity)>, StoreError> {
        dispatch!(self, s => s.identities(now))
    }

    async fn forget_identity(&self, ip: IpAddr) -> Result<bool, StoreError> {
        dispatch!(self, s => s.forget_identity(ip))
    }

    async fn familiar_since(
        &self,
        account: &str,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<Option<UnixTime>, StoreError> {
        dispatch!(self, s => s.familiar_since(account, ip, now))
    }

    async fn note_familiar(
        &self,
        account: &str,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.note_familiar(account, ip, now))
    }

    async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        dispatch!(self, s => s.user(name))
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        dispatch!(self, s => s.users())
    }

    async fn create_user(&self, user: UserRecord) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_user(user))
    }

    async fn register(
        &self,
        user: UserRecord,
        token: TokenHash,
    ) -> Result<SessionInfo, StoreError> {
        dispatch!(self, s => s.register(user, token))
    }

    async fn set_password(&self, name: &str, password_hash: String) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_password(name, password_hash))
    }

    async fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.remove_user(name))
    }

    async fn create_session(
        &self,
        token: TokenHash,
        user: &str,
        now: UnixTime,
    ) -> Result<SessionInfo, StoreError> {
        dispatch!(self, s => s.create_session(token, user, now))
    }

    async fn rotate_session(
        &self,
        presented: TokenHash,
        next: TokenHash,
        now: UnixTime,
    ) -> Result<Rotation, StoreError> {
        dispatch!(self, s => s.rotate_session(presented, next, now))
    }

    async fn revoke_session(&self, chain: Uuid, cause: EndCause) -> Result<bool, StoreError> {
        dispatch!(self, s => s.revoke_session(chain, cause))
    }

    async fn revoke_user_sessions(&self, user: &str) -> Result<usize, StoreError> {
        dispatch!(self, s => s.revoke_user_sessions(user))
    }

    async fn sessions(&self, user: &str, now: UnixTime) -> Result<Vec<SessionInfo>, StoreError> {
        dispatch!(self, s => s.sessions(user, now))
    }

    async fn chains_alive(&self, chains: Vec<Uuid>) -> Result<Vec<Uuid>, StoreError> {
        dispatch!(self, s => s.chains_alive(chains))
    }

    fn revocations(&self) -> Option<broadcast::Receiver<Revocation>> {
        match self {
            Store::Sqlite(store) => UserStore::revocations(store),
            Store::Postgres(store) => UserStore::revocations(store),
        }
    }

    fn is_unreachable(&self) -> bool {
        match self {
            Store::Sqlite(_) => false,
            Store::Postgres(store) => store.is_unreachable(),
        }
    }

    async fn hearing_revocations(&self) {
        if let Store::Postgres(store) = self {
            store.listening().await;
        }
    }

    async fn note_visit(&self, ip: IpAddr, name: &str, now: UnixTime) -> Result<(), StoreError> {
        dispatch!(self, s => s.note_visit(ip, name, now))
    }
}
