//! The journal of the previous release, imported: users (with their
//! password hashes), session chains (with every token rotated away, so a
//! copy presented later is still caught as reuse), identities and familiar
//! sources, in one transaction. At start a server imports
//! `DATA_DIR/store.journal` by itself when it finds no database beside it
//! (or an empty one), then renames the journal `store.journal.imported`;
//! `echo-server store import-journal FILE` does the same by hand.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use nix::fcntl::{Flock, FlockArg};
use rusqlite::{Connection, params};

use super::{
    Failure, SqliteStore,
    journal::{self, JOURNAL_FILE, LOCK_FILE, state::State},
};
use crate::{
    store::{StoreError, sql::secs},
    sys::files,
    sys::names::{canonical, confusable_key},
};

/// What an import brought over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    /// Users, each with their password hash.
    pub users: usize,
    /// Live session chains.
    pub sessions: usize,
    /// Tokens of those chains, current and rotated away.
    pub tokens: usize,
    /// Addresses with a name (identification mode, and the user suggested
    /// to an address).
    pub identities: usize,
    /// Sources accounts logged in from.
    pub familiar: usize,
    /// Second spellings of a name (journals from before names were
    /// compared canonically), left out with their sessions.
    pub skipped_users: usize,
}

/// The name an imported journal is renamed to.
pub fn imported_name(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".imported");
    PathBuf::from(name)
}

impl SqliteStore {
    /// Imports the journal at `journal` and renames it `*.imported`. The
    /// journal's lock is taken first (waited for up to 10 s), so a server
    /// of the previous release still running on it is a clear error, not
    /// a lost change. A name the database already has stops the import:
    /// nothing of it is kept.
    pub async fn import_journal(&self, journal: &Path) -> Result<Imported, StoreError> {
        match self.import(journal, false).await? {
            Some(imported) => Ok(imported),
            None => Err(StoreError::Io {
                what: journal.display().to_string(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }),
        }
    }

    /// At start: imports `DATA_DIR/store.journal` when there is one and the
    /// database holds nothing yet; `None` when there was nothing to do
    /// (several servers starting at once on a new file: one imports, the
    /// others find it done).
    pub async fn import_beside(&self, data_dir: &Path) -> Result<Option<Imported>, StoreError> {
        let journal = data_dir.join(JOURNAL_FILE);
        if !journal.exists() {
            return Ok(None);
        }
        let imported = self.import(&journal, true).await?;
        if imported.is_none() && journal.exists() {
            tracing::warn!(
                journal = %journal.display(),
                "a journal store is beside a database that already has data: not imported (echo-server store import-journal FILE imports it by hand)"
            );
        }
        Ok(imported)
    }

    /// The import, under the journal's lock: `None` when the journal is
    /// gone once the lock is held (another process imported it), or when
    /// `only_if_empty` and the database has data (checked in the writing
    /// transaction, so two importers cannot both find it empty).
    async fn import(
        &self,
        journal: &Path,
        only_if_empty: bool,
    ) -> Result<Option<Imported>, StoreError> {
        let _lock = lock_journal(journal).await?;
        if !journal.exists() {
            return Ok(None);
        }
        let state = journal::read(journal)?;
        let imported = self
            .write(move |connection| {
                if only_if_empty && !is_empty(connection)? {
                    return Ok(None);
                }
                insert(connection, &state).map(Some)
            })
            .await?;
        let Some(imported) = imported else {
            return Ok(None);
        };
        let renamed = imported_name(journal);
        std::fs::rename(journal, &renamed).map_err(|source| StoreError::Io {
            what: journal.display().to_string(),
            source,
        })?;
        let _ = self.inner.imported.set((imported, renamed.clone()));
        Ok(Some(imported))
    }
}

/// Whether the database holds no user, session or identity.
fn is_empty(connection: &Connection) -> Result<bool, Failure> {
    let sql = "SELECT NOT EXISTS (SELECT 1 FROM users) AND NOT EXISTS (SELECT 1 FROM identities)";
    Ok(connection.query_row(sql, [], |row| row.get(0))?)
}

/// How long an importer waits for the journal's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The journal's lock file (made 0600 if missing), held as the journal
/// store held it; waited for up to [`LOCK_WAIT`] (another new server
/// importing), past which it is an old server's: [`StoreError::InUse`].
async fn lock_journal(journal: &Path) -> Result<Flock<File>, StoreError> {
    let lock_path = journal.with_file_name(LOCK_FILE);
    let mut file = files::open_private(&lock_path).map_err(|source| StoreError::Io {
        what: lock_path.display().to_string(),
        source,
    })?;
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((back, _)) if tokio::time::Instant::now() < deadline => {
                file = back;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(_) => {
                return Err(StoreError::InUse {
                    what: lock_path.display().to_string(),
                });
            }
        }
    }
}

/// Writes the journal's state into the database.
fn insert(connection: &Connection, state: &State) -> Result<Imported, Failure> {
    let mut imported = Imported::default();
    let imported_users = insert_users(connection, state, &mut imported)?;
    insert_sessions(connection, state, &imported_users, &mut imported)?;
    insert_addresses(connection, state, &mut imported)?;
    Ok(imported)
}

/// The users the journal's indexes keep; their names.
fn insert_users<'a>(
    connection: &Connection,
    state: &'a State,
    imported: &mut Imported,
) -> Result<std::collections::HashSet<&'a str>, Failure> {
    let mut imported_users = std::collections::HashSet::new();
    let sql = "INSERT INTO users (name, canonical, lookalike, password_hash, created)
               VALUES (?1, ?2, ?3, ?4, ?5)";
    let mut users = connection.prepare(sql)?;
    let sql =
        "SELECT EXISTS (SELECT 1 FROM users WHERE name = ?1 OR canonical = ?2 OR lookalike = ?3)";
    let mut taken = connection.prepare(sql)?;
    for (name, user) in &state.users {
        let (canonical, lookalike) = (canonical(name), confusable_key(name));
        // A journal from before names were compared canonically may hold
        // two spellings of one name: the one its indexes keep is imported.
        let kept = state.canonical.get(&canonical) == Some(name)
            && state.lookalikes.get(&lookalike) == Some(name);
        if !kept {
            imported.skipped_users += 1;
            continue;
        }
        if taken.query_row(params![name, canonical, lookalike], |row| row.get(0))? {
            return Err(StoreError::NameTaken(name.clone()).into());
        }
        users.execute(params![
            name,
            canonical,
            lookalike,
            user.hash,
            secs(user.created)
        ])?;
        imported_users.insert(name.as_str());
        imported.users += 1;
    }
    Ok(imported_users)
}

/// The session chains of `users`, with every token they have had.
fn insert_sessions(
    connection: &Connection,
    state: &State,
    users: &std::collections::HashSet<&str>,
    imported: &mut Imported,
) -> Result<(), Failure> {
    let sql = "INSERT INTO sessions (family, user_name, created, last_used, current, rotations)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    let mut sessions = connection.prepare(sql)?;
    let mut tokens =
        connection.prepare("INSERT INTO session_tokens (hash, family) VALUES (?1, ?2)")?;
    for (chain, session) in &state.chains {
        if !users.contains(session.user.as_str()) {
            continue;
        }
        let family = chain.to_string();
        let rotations = i64::try_from(session.rotated.len()).unwrap_or(i64::MAX);
        sessions.execute(params![
            family,
            session.user,
            secs(session.created),
            secs(session.last_used),
            session.current.0.as_slice(),
            rotations
        ])?;
        for token in session.rotated.iter().chain([&session.current]) {
            tokens.execute(params![token.0.as_slice(), family])?;
            imported.tokens += 1;
        }
        imported.sessions += 1;
    }
    Ok(())
}

/// Names by address, and the addresses each account was seen from.
fn insert_addresses(
    connection: &Connection,
    state: &State,
    imported: &mut Imported,
) -> Result<(), Failure> {
    let sql = "INSERT INTO identities (ip, name, seen) VALUES (?1, ?2, ?3)
               ON CONFLICT (ip) DO UPDATE SET name = excluded.name, seen = excluded.seen
               WHERE excluded.seen > identities.seen";
    let mut identities = connection.prepare(sql)?;
    for (ip, identity) in &state.identities {
        identities.execute(params![ip.to_string(), identity.name, secs(identity.seen)])?;
        imported.identities += 1;
    }
    let sql = "INSERT INTO familiar_sources (account, source, seen) VALUES (?1, ?2, ?3)
               ON CONFLICT (account, source) DO UPDATE SET seen = excluded.seen
               WHERE excluded.seen > familiar_sources.seen";
    let mut familiar = connection.prepare(sql)?;
    for (account, sources) in &state.familiar {
        for (source, seen) in sources {
            familiar.execute(params![account, source.address().to_string(), secs(*seen)])?;
            imported.familiar += 1;
        }
    }
    Ok(())
}
