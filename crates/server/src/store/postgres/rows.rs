//! Rows to values and back, and the one statement that adds a user (with
//! or without a first session).

use tokio_postgres::Row;
use uuid::Uuid;

use super::{Param, PgStore};
use crate::{
    store::{SessionInfo, StoreError, TokenHash, UserRecord},
    sys::names::{canonical, confusable_key},
};

/// A lookup by text the database cannot hold: nothing has it, so it finds
/// nothing (no row, no change), as a store that can hold it would.
pub(super) fn unmatched<T: Default>(result: Result<T, StoreError>) -> Result<T, StoreError> {
    match result {
        Err(StoreError::InvalidText(_)) => Ok(T::default()),
        other => other,
    }
}

/// Whether PostgreSQL can hold `text` in any encoding: no NUL character.
/// The login path checks it before asking, saving the round trip (and
/// the database's own error log line) for each such name.
pub(super) fn storable(text: &str) -> bool {
    !text.contains('\0')
}

pub(super) use crate::store::sql::{secs, unix};

impl PgStore {
    pub(super) fn session_info(
        &self,
        chain: Uuid,
        user: String,
        created: i64,
        last_used: i64,
    ) -> SessionInfo {
        crate::store::sql::session_info(self.inner.lifetimes, chain, user, created, last_used)
    }

    pub(super) fn user_record(row: &Row) -> UserRecord {
        UserRecord {
            name: row.get(0),
            password_hash: row.get(1),
            created: unix(row.get(2)),
        }
    }

    /// Adds a user and, when `token` is given, their first session chain,
    /// in one statement.
    pub(super) async fn insert_user(
        &self,
        user: UserRecord,
        session: Option<(Uuid, TokenHash)>,
    ) -> Result<(), StoreError> {
        let (chain, token) = session.map_or((None, None), |(f, t)| (Some(f), Some(t.0.to_vec())));
        let sql = "WITH u AS (
                INSERT INTO users (name, canonical, lookalike, password_hash, created)
                VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING name),
             s AS (
                INSERT INTO sessions (family, user_name, created, last_used, current)
                SELECT $6, name, $5, $5, $7 FROM u WHERE $6::uuid IS NOT NULL
                RETURNING family),
             t AS (INSERT INTO session_tokens (hash, family) SELECT $7, family FROM s)
             SELECT count(*) FROM u";
        let params: [&Param<'_>; 7] = [
            &user.name,
            &canonical(&user.name),
            &confusable_key(&user.name),
            &user.password_hash,
            &secs(user.created),
            &chain,
            &token,
        ];
        let row = self
            .row(sql, &params)
            .await?
            .ok_or_else(|| StoreError::Database("count(*) returned no row".into()))?;
        match row.get::<_, i64>(0) {
            0 => Err(StoreError::NameTaken(user.name)),
            _ => Ok(()),
        }
    }
}

/// A counter from an `integer` column.
pub(super) fn count(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// A counter for an `integer` column.
pub(super) fn int(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}
