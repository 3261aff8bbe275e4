//! [`UserStore`] for [`SqliteStore`]: reads on the reading connections,
//! changes through the writer (each its own savepoint of a group-committed
//! transaction, so a change is durable when it returns).
//!
//! A session chain's id is the `family` column (its UUID as text), as in
//! the PostgreSQL schema.

use std::net::IpAddr;

use rusqlite::{self, OptionalExtension, params};
use uuid::Uuid;

use super::{
    SqliteStore,
    identities::{Lookup, read_identity},
    rows::{
        by_name, chain_of, delete_chain, ending, insert_chain, insert_user, resolve, rotate_on,
        user_record,
    },
};
use crate::{
    store::{
        EndCause, FAMILIAR_SOURCE_SECS, Identity, MAX_FAMILIAR_SOURCES, Rotation, SessionInfo,
        StoreError, TokenHash, UnixTime, UserRecord, UserStore,
        sql::{secs, unix},
    },
    sys::names::canonical,
    sys::peer::Source,
};

impl UserStore for SqliteStore {
    async fn identity(&self, ip: IpAddr, now: UnixTime) -> Result<Option<Identity>, StoreError> {
        let known = match self.inner.identities.lookup(ip) {
            Lookup::Kept(known) => known,
            Lookup::Read(generation) => {
                let known = self
                    .read(move |connection| read_identity(connection, ip))
                    .await?;
                self.inner.identities.fill(ip, generation, known.clone());
                known
            }
        };
        let known = known.map(|(name, seen)| Identity {
            name,
            seen: unix(seen),
        });
        Ok(known.filter(|known| self.inner.lifetimes.identity_kept(known.seen, now)))
    }

    async fn remember_identity(
        &self,
        ip: IpAddr,
        name: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let (kept, tickets) = (name.to_owned(), self.inner.identities.tickets());
        let name = kept.clone();
        let written = self
            .write(move |connection| {
                let sql = "INSERT INTO identities (ip, name, seen) VALUES (?1, ?2, ?3)
                       ON CONFLICT (ip) DO UPDATE SET name = excluded.name, seen = excluded.seen";
                connection.prepare_cached(sql)?.execute(params![
                    ip.to_string(),
                    name,
                    secs(now)
                ])?;
                Ok(tickets.take())
            })
            .await;
        let change = written
            .as_ref()
            .ok()
            .map(|ticket| (*ticket, Some((kept, secs(now)))));
        self.inner.identities.changed(ip, change);
        written.map(drop)
    }

    async fn identities(&self, now: UnixTime) -> Result<Vec<(IpAddr, Identity)>, StoreError> {
        let kept_since = secs(now.saturating_sub(self.inner.lifetimes.identity));
        let rows = self
            .read(move |connection| {
                let sql = "SELECT ip, name, seen FROM identities WHERE seen > ?1";
                let mut statement = connection.prepare_cached(sql)?;
                let rows = statement
                    .query_map(params![kept_since], |row| {
                        let identity = Identity {
                            name: row.get(1)?,
                            seen: unix(row.get(2)?),
                        };
                        Ok((row.get::<_, String>(0)?, identity))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?;
        // Stored as text: ordered here as addresses (10.0.0.2 after 9.0.0.1).
        let mut known: Vec<(IpAddr, Identity)> = rows
            .into_iter()
            .filter_map(|(ip, identity)| Some((ip.parse().ok()?, identity)))
            .collect();
        known.sort_by_key(|(ip, _)| *ip);
        Ok(known)
    }

    async fn forget_identity(&self, ip: IpAddr) -> Result<bool, StoreError> {
        let tickets = self.inner.identities.tickets();
        let forgotten = self
            .write(move |connection| {
                let sql = "DELETE FROM identities WHERE ip = ?1";
                let deleted = connection
                    .prepare_cached(sql)?
                    .execute(params![ip.to_string()])?;
                Ok((tickets.take(), deleted > 0))
            })
            .await;
        let change = forgotten.as_ref().ok().map(|(ticket, _)| (*ticket, None));
        self.inner.identities.changed(ip, change);
        forgotten.map(|(_, any)| any)
    }

    async fn familiar_since(
        &self,
        account: &str,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<Option<UnixTime>, StoreError> {
        let account = account.to_owned();
        let source = Source::of(ip).address().to_string();
        let seen = self
            .read(move |connection| {
                let sql = "SELECT seen FROM familiar_sources WHERE account = ?1 AND source = ?2";
                Ok(connection
                    .prepare_cached(sql)?
                    .query_row(params![account, source], |row| row.get::<_, i64>(0))
                    .optional()?)
            })
            .await?;
        Ok(seen
            .map(unix)
            .filter(|seen| seen.saturating_add(FAMILIAR_SOURCE_SECS) > now))
    }

    async fn note_familiar(
        &self,
        account: &str,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let account = account.to_owned();
        let source = Source::of(ip).address().to_string();
        let keep = i64::try_from(MAX_FAMILIAR_SOURCES).unwrap_or(i64::MAX);
        self.write(move |connection| {
            let sql = "INSERT INTO familiar_sources (account, source, seen) VALUES (?1, ?2, ?3)
                       ON CONFLICT (account, source)
                       DO UPDATE SET seen = max(familiar_sources.seen, excluded.seen)";
            connection
                .prepare_cached(sql)?
                .execute(params![account, source, secs(now)])?;
            let sql = "DELETE FROM familiar_sources WHERE account = ?1 AND source NOT IN (
                           SELECT source FROM familiar_sources WHERE account = ?1
                           ORDER BY seen DESC LIMIT ?2)";
            connection
                .prepare_cached(sql)?
                .execute(params![account, keep])?;
            Ok(())
        })
        .await
    }

    async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let name = name.to_owned();
        self.read(move |connection| {
            let sql = concat!(
                "SELECT name, password_hash, created FROM users WHERE name = ",
                by_name!()
            );
            Ok(connection
                .prepare_cached(sql)?
                .query_row(params![name, canonical(&name)], user_record)
                .optional()?)
        })
        .await
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.read(|connection| {
            let sql = "SELECT name, password_hash, created FROM users ORDER BY name";
            let mut statement = connection.prepare_cached(sql)?;
            let users = statement
                .query_map([], user_record)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(users)
        })
        .await
    }

    async fn create_user(&self, user: UserRecord) -> Result<(), StoreError> {
        self.write(move |connection| insert_user(connection, &user, None))
            .await
    }

    async fn register(
        &self,
        user: UserRecord,
        token: TokenHash,
    ) -> Result<SessionInfo, StoreError> {
        let chain = Uuid::new_v4();
        let (name, now) = (user.name.clone(), secs(user.created));
        self.write(move |connection| insert_user(connection, &user, Some((chain, token))))
            .await?;
        Ok(self.session_info(chain, name, now, now))
    }

    async fn set_password(&self, name: &str, password_hash: String) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(move |connection| {
            let Some(stored) = resolve(connection, &name)? else {
                return Err(StoreError::NoSuchUser(name).into());
            };
            let sql = "UPDATE users SET password_hash = ?2 WHERE name = ?1";
            connection
                .prepare_cached(sql)?
                .execute(params![stored, password_hash])?;
            ending(connection, EndCause::PasswordChanged, |connection| {
                let sql = "DELETE FROM sessions WHERE user_name = ?1";
                Ok(connection.prepare_cached(sql)?.execute(params![stored])?)
            })?;
            Ok(())
        })
        .await
    }

    async fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(move |connection| {
            let sql = concat!("DELETE FROM users WHERE name = ", by_name!());
            let removed = ending(connection, EndCause::Operator, |connection| {
                Ok(connection
                    .prepare_cached(sql)?
                    .execute(params![name, canonical(&name)])?)
            })?;
            match removed {
                0 => Err(StoreError::NoSuchUser(name).into()),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn create_session(
        &self,
        token: TokenHash,
        user: &str,
        now: UnixTime,
    ) -> Result<SessionInfo, StoreError> {
        let chain = Uuid::new_v4();
        let user = user.to_owned();
        let name = self
            .write(move |connection| {
                let Some(stored) = resolve(connection, &user)? else {
                    return Err(StoreError::NoSuchUser(user).into());
                };
                insert_chain(connection, chain, &stored, now, token)?;
                Ok(stored)
            })
            .await?;
        Ok(self.session_info(chain, name, secs(now), secs(now)))
    }

    async fn rotate_session(
        &self,
        presented: TokenHash,
        next: TokenHash,
        now: UnixTime,
    ) -> Result<Rotation, StoreError> {
        let lifetimes = self.inner.lifetimes;
        self.write(move |connection| rotate_on(connection, lifetimes, presented, next, now))
            .await
    }

    async fn revoke_session(&self, chain: Uuid, cause: EndCause) -> Result<bool, StoreError> {
        self.write(move |connection| Ok(delete_chain(connection, &chain.to_string(), cause)? > 0))
            .await
    }

    async fn revoke_user_sessions(&self, user: &str) -> Result<usize, StoreError> {
        let user = user.to_owned();
        self.write(move |connection| {
            let stored = resolve(connection, &user)?.unwrap_or(user);
            ending(connection, EndCause::Operator, |connection| {
                let sql = "DELETE FROM sessions WHERE user_name = ?1";
                Ok(connection.prepare_cached(sql)?.execute(params![stored])?)
            })
        })
        .await
    }

    async fn sessions(&self, user: &str, now: UnixTime) -> Result<Vec<SessionInfo>, StoreError> {
        let user = user.to_owned();
        let rows = self
            .read(move |connection| {
                let stored = resolve(connection, &user)?.unwrap_or(user);
                let sql = "SELECT family, user_name, created, last_used FROM sessions
                           WHERE user_name = ?1 ORDER BY created, rowid";
                let mut statement = connection.prepare_cached(sql)?;
                let rows = statement
                    .query_map(params![stored], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })?
                    .collect::<rusqlite::Result<Vec<(String, String, i64, i64)>>>()?;
                Ok(rows)
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(chain, user, created, used)| {
                self.session_info(chain_of(&chain), user, created, used)
            })
            .filter(|info| info.expires > now)
            .collect())
    }

    async fn chains_alive(&self, chains: Vec<Uuid>) -> Result<Vec<Uuid>, StoreError> {
        let ids: Vec<String> = chains.iter().map(Uuid::to_string).collect();
        let ids = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
        self.read(move |connection| {
            let sql =
                "SELECT family FROM sessions WHERE family IN (SELECT value FROM json_each(?1))";
            let mut statement = connection.prepare_cached(sql)?;
            let alive = statement
                .query_map(params![ids], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(alive.iter().map(|id| chain_of(id)).collect())
        })
        .await
    }

    fn revocations(&self) -> Option<tokio::sync::broadcast::Receiver<crate::store::Revocation>> {
        Some(SqliteStore::revocations(self))
    }
}
