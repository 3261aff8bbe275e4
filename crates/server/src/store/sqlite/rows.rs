//! Rows to values and back, and the statements several operations share:
//! adding a user or a chain, resolving a name in any spelling, rotating a
//! token.

use rusqlite::{self, Connection, OptionalExtension, params};
use uuid::Uuid;

use super::{Failure, SqliteStore};
use crate::{
    store::{
        EndCause, Lifetimes, MAX_ROTATIONS_PER_CHAIN, Rotation, SessionInfo, StoreError, TokenHash,
        UnixTime, UserRecord,
        sql::{secs, unix},
    },
    sys::names::{canonical, confusable_key},
};

/// The stored name of the user `?1` (canonical form `?2`), in any spelling:
/// the exact name first.
macro_rules! by_name {
    () => {
        "(SELECT name FROM users WHERE name = ?1 OR canonical = ?2 ORDER BY name = ?1 DESC LIMIT 1)"
    };
}
pub(super) use by_name;

impl SqliteStore {
    pub(super) fn session_info(
        &self,
        chain: Uuid,
        user: String,
        created: i64,
        last_used: i64,
    ) -> SessionInfo {
        session_info(self.inner.lifetimes, chain, user, created, last_used)
    }
}

pub(super) use crate::store::sql::session_info;

/// A user from `name, password_hash, created`.
pub(super) fn user_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        name: row.get(0)?,
        password_hash: row.get(1)?,
        created: unix(row.get(2)?),
    })
}

/// A chain id as stored; an id that is not a UUID is no chain.
pub(super) fn chain_of(text: &str) -> Uuid {
    Uuid::parse_str(text).unwrap_or(Uuid::nil())
}

/// Adds `user` and, when `session` is given, their first chain; `NameTaken`
/// when the name, its canonical form or its look-alike is taken.
pub(super) fn insert_user(
    connection: &Connection,
    user: &UserRecord,
    session: Option<(Uuid, TokenHash)>,
) -> Result<(), Failure> {
    let sql = "INSERT INTO users (name, canonical, lookalike, password_hash, created)
               VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING";
    let added = connection.prepare_cached(sql)?.execute(params![
        user.name,
        canonical(&user.name),
        confusable_key(&user.name),
        user.password_hash,
        secs(user.created)
    ])?;
    if added == 0 {
        return Err(StoreError::NameTaken(user.name.clone()).into());
    }
    if let Some((chain, token)) = session {
        insert_chain(connection, chain, &user.name, user.created, token)?;
    }
    Ok(())
}

/// Starts the chain `chain` of the user stored as `name`.
pub(super) fn insert_chain(
    connection: &Connection,
    chain: Uuid,
    name: &str,
    now: UnixTime,
    token: TokenHash,
) -> Result<(), Failure> {
    let sql = "INSERT INTO sessions (family, user_name, created, last_used, current)
               VALUES (?1, ?2, ?3, ?3, ?4)";
    let family = chain.to_string();
    connection.prepare_cached(sql)?.execute(params![
        family,
        name,
        secs(now),
        token.0.as_slice()
    ])?;
    let sql = "INSERT INTO session_tokens (hash, family) VALUES (?1, ?2)";
    connection
        .prepare_cached(sql)?
        .execute(params![token.0.as_slice(), family])?;
    Ok(())
}

/// The stored name of `name` in any spelling.
pub(super) fn resolve(connection: &Connection, name: &str) -> Result<Option<String>, Failure> {
    let sql = concat!("SELECT ", by_name!());
    Ok(connection
        .prepare_cached(sql)?
        .query_row(params![name, canonical(name)], |row| row.get(0))
        .optional()?
        .flatten())
}

/// The chain that has had `token`: id, user, created, last used, current
/// token, rotations.
type Chain = (String, String, i64, i64, Vec<u8>, i64);

pub(super) fn chain_with(
    connection: &Connection,
    token: TokenHash,
) -> Result<Option<Chain>, Failure> {
    let sql = "SELECT s.family, s.user_name, s.created, s.last_used, s.current, s.rotations
               FROM session_tokens t JOIN sessions s ON s.family = t.family WHERE t.hash = ?1";
    Ok(connection
        .prepare_cached(sql)?
        .query_row(params![token.0.as_slice()], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })
        .optional()?)
}

pub(super) fn delete_chain(
    connection: &Connection,
    family: &str,
    cause: EndCause,
) -> Result<usize, Failure> {
    ending(connection, cause, |connection| {
        let sql = "DELETE FROM sessions WHERE family = ?1";
        Ok(connection.prepare_cached(sql)?.execute(params![family])?)
    })
}

/// Runs `end`, which ends chains, with `cause` set for the trigger that
/// writes their revocations; clears it after.
pub(super) fn ending<R>(
    connection: &Connection,
    cause: EndCause,
    end: impl FnOnce(&Connection) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let set = "UPDATE ending SET cause = ?1 WHERE one = 1";
    connection
        .prepare_cached(set)?
        .execute(params![cause.as_str()])?;
    let ended = end(connection);
    let clear = "UPDATE ending SET cause = NULL WHERE one = 1";
    connection.prepare_cached(clear)?.execute([])?;
    ended
}

/// The rotation of `presented`, in the writer's transaction: the read
/// and the change are one, so two servers presenting one token at once
/// rotate it once, and the other sees reuse.
pub(super) fn rotate_on(
    connection: &Connection,
    lifetimes: Lifetimes,
    presented: TokenHash,
    next: TokenHash,
    now: UnixTime,
) -> Result<Rotation, Failure> {
    let Some((family, user, created, last_used, current, rotations)) =
        chain_with(connection, presented)?
    else {
        return Ok(Rotation::Unknown);
    };
    let chain = chain_of(&family);
    if current.as_slice() != presented.0.as_slice() {
        delete_chain(connection, &family, EndCause::Reuse)?;
        return Ok(Rotation::Reused { user, chain });
    }
    let max = i64::try_from(MAX_ROTATIONS_PER_CHAIN).unwrap_or(i64::MAX);
    let expires = lifetimes.expires(unix(created), unix(last_used));
    if rotations >= max || expires <= now {
        delete_chain(connection, &family, EndCause::Expired)?;
        return Ok(Rotation::Expired { user, chain });
    }
    let sql = "UPDATE sessions SET current = ?2, last_used = ?3, rotations = rotations + 1
               WHERE family = ?1";
    connection
        .prepare_cached(sql)?
        .execute(params![family, next.0.as_slice(), secs(now)])?;
    let sql = "INSERT INTO session_tokens (hash, family) VALUES (?1, ?2)";
    connection
        .prepare_cached(sql)?
        .execute(params![next.0.as_slice(), family])?;
    Ok(Rotation::Rotated(session_info(
        lifetimes,
        chain,
        user,
        created,
        secs(now),
    )))
}
