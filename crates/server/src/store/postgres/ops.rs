//! [`UserStore`] for [`PgStore`]: one statement (or one function call) per
//! operation, each its own transaction, so a change is durable when it
//! returns (`synchronous_commit` as the database has it).

use std::net::IpAddr;

use uuid::Uuid;

use super::{
    PgStore,
    rows::{secs, unix},
};
use crate::{
    names::canonical,
    store::{
        Identity, MAX_ROTATIONS_PER_CHAIN, Rotation, SessionInfo, StoreError, TokenHash, UnixTime,
        UserRecord, UserStore,
    },
};

/// The stored name of the user `$1` (canonical form `$2`), in any spelling:
/// the exact name first.
const RESOLVE: &str =
    "SELECT name FROM users WHERE name = $1 OR canonical = $2 ORDER BY name = $1 DESC LIMIT 1";

/// How often each server deletes what has expired.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl PgStore {
    /// Deletes the chains that have expired and the addresses unseen for
    /// their lifetime at `now`, without announcing the chains as revoked;
    /// returns how many of each.
    pub async fn sweep(&self, now: UnixTime) -> Result<(u64, u64), StoreError> {
        let mut client = self.client().await?;
        let lifetimes = self.inner.lifetimes;
        let tx = self.check(client.transaction().await)?;
        self.check(tx.batch_execute("SET LOCAL echo.sweeping = 'on'").await)?;
        let chains = self.check(
            tx.execute(
                "DELETE FROM sessions WHERE LEAST(created + $2, last_used + $3) <= $1",
                &[&secs(now), &secs(lifetimes.absolute), &secs(lifetimes.idle)],
            )
            .await,
        )?;
        let addresses = self.check(
            tx.execute(
                "DELETE FROM identities WHERE seen <= $1",
                &[&secs(now.saturating_sub(lifetimes.identity))],
            )
            .await,
        )?;
        self.check(tx.commit().await)?;
        Ok((chains, addresses))
    }

    /// Sweeps about once a minute (the first a minute after start), for the
    /// life of the runtime, by the system clock.
    pub(super) async fn sweep_forever(self) {
        let first = tokio::time::Instant::now() + SWEEP_EVERY;
        let mut every = tokio::time::interval_at(first, SWEEP_EVERY);
        loop {
            every.tick().await;
            let now = crate::clock::Clock::now(&crate::clock::SystemClock);
            match self.sweep(now).await {
                Ok((chains, addresses)) if chains + addresses > 0 => {
                    tracing::info!(chains, addresses, "expired sessions and addresses deleted");
                }
                Ok(_) | Err(StoreError::Unavailable(_)) => {}
                Err(err) => tracing::warn!(error = %err, "cannot delete expired sessions"),
            }
        }
    }
}

impl UserStore for PgStore {
    async fn identity(&self, ip: IpAddr, now: UnixTime) -> Result<Option<Identity>, StoreError> {
        let client = self.client().await?;
        let row = self.check(
            client
                .query_opt(
                    &self
                        .prepared(&client, "SELECT name, seen FROM identities WHERE ip = $1")
                        .await?,
                    &[&ip],
                )
                .await,
        )?;
        let lifetimes = self.inner.lifetimes;
        Ok(row
            .map(|row| Identity {
                name: row.get(0),
                seen: unix(row.get(1)),
            })
            .filter(|known| lifetimes.identity_kept(known.seen, now)))
    }

    async fn remember_identity(
        &self,
        ip: IpAddr,
        name: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        self.check(
            client
                .execute(
                    &self
                        .prepared(
                            &client,
                            "INSERT INTO identities (ip, name, seen) VALUES ($1, $2, $3)
                     ON CONFLICT (ip) DO UPDATE SET name = EXCLUDED.name, seen = EXCLUDED.seen",
                        )
                        .await?,
                    &[&ip, &name, &secs(now)],
                )
                .await,
        )?;
        Ok(())
    }

    async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let client = self.client().await?;
        let row = self.check(
            client
                .query_opt(
                    &self.prepared(&client, &format!(
                        "SELECT name, password_hash, created FROM users WHERE name = ({RESOLVE})"
                    )).await?,
                    &[&name, &canonical(name)],
                )
                .await,
        )?;
        Ok(row.as_ref().map(Self::user_record))
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let client = self.client().await?;
        let rows = self.check(
            client
                .query(
                    &self.prepared(&client, "SELECT name, password_hash, created FROM users ORDER BY name COLLATE \"C\"").await?,
                    &[],
                )
                .await,
        )?;
        Ok(rows.iter().map(Self::user_record).collect())
    }

    async fn create_user(&self, user: UserRecord) -> Result<(), StoreError> {
        self.insert_user(user, None).await
    }

    async fn register(
        &self,
        user: UserRecord,
        token: TokenHash,
    ) -> Result<SessionInfo, StoreError> {
        let family = Uuid::new_v4();
        let (name, now) = (user.name.clone(), secs(user.created));
        self.insert_user(user, Some((family, token))).await?;
        Ok(self.session_info(family, name, now, now))
    }

    async fn set_password(&self, name: &str, password_hash: String) -> Result<(), StoreError> {
        let client = self.client().await?;
        let row = self.check(
            client
                .query_opt(
                    &self
                        .prepared(
                            &client,
                            &format!(
                        "WITH u AS (UPDATE users SET password_hash = $3 WHERE name = ({RESOLVE})
                                    RETURNING name),
                              d AS (DELETE FROM sessions WHERE user_name IN (SELECT name FROM u))
                         SELECT name FROM u"
                    ),
                        )
                        .await?,
                    &[&name, &canonical(name), &password_hash],
                )
                .await,
        )?;
        row.map(drop)
            .ok_or_else(|| StoreError::NoSuchUser(name.to_owned()))
    }

    async fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        let removed = self.check(
            client
                .execute(
                    &self
                        .prepared(
                            &client,
                            &format!("DELETE FROM users WHERE name = ({RESOLVE})"),
                        )
                        .await?,
                    &[&name, &canonical(name)],
                )
                .await,
        )?;
        match removed {
            0 => Err(StoreError::NoSuchUser(name.to_owned())),
            _ => Ok(()),
        }
    }

    async fn create_session(
        &self,
        token: TokenHash,
        user: &str,
        now: UnixTime,
    ) -> Result<SessionInfo, StoreError> {
        let client = self.client().await?;
        let family = Uuid::new_v4();
        let statement = self.check(
            client
                .prepare_cached(&format!(
                    "WITH s AS (
                        INSERT INTO sessions (family, user_name, created, last_used, current)
                        SELECT $3, name, $4, $4, $5 FROM ({RESOLVE}) u RETURNING family, user_name),
                     t AS (INSERT INTO session_tokens (hash, family) SELECT $5, family FROM s)
                     SELECT user_name FROM s"
                ))
                .await,
        )?;
        let row = self.check(
            client
                .query_opt(
                    &statement,
                    &[
                        &user,
                        &canonical(user),
                        &family,
                        &secs(now),
                        &token.0.as_slice(),
                    ],
                )
                .await,
        )?;
        let name: String = row
            .ok_or_else(|| StoreError::NoSuchUser(user.to_owned()))?
            .get(0);
        Ok(self.session_info(family, name, secs(now), secs(now)))
    }

    async fn rotate_session(
        &self,
        presented: TokenHash,
        next: TokenHash,
        now: UnixTime,
    ) -> Result<Rotation, StoreError> {
        let client = self.client().await?;
        let lifetimes = self.inner.lifetimes;
        let statement = self.check(
            client
                .prepare_cached("SELECT * FROM echo_rotate($1, $2, $3, $4, $5, $6)")
                .await,
        )?;
        let max = i32::try_from(MAX_ROTATIONS_PER_CHAIN).unwrap_or(i32::MAX);
        let row = self.check(
            client
                .query_one(
                    &statement,
                    &[
                        &presented.0.as_slice(),
                        &next.0.as_slice(),
                        &secs(now),
                        &secs(lifetimes.idle),
                        &secs(lifetimes.absolute),
                        &max,
                    ],
                )
                .await,
        )?;
        let outcome: &str = row.get(0);
        let family: Option<Uuid> = row.get(1);
        let user: Option<String> = row.get(2);
        let created: Option<i64> = row.get(3);
        Ok(match (outcome, family, user, created) {
            ("rotated", Some(family), Some(user), Some(created)) => {
                Rotation::Rotated(self.session_info(family, user, created, secs(now)))
            }
            ("reused", Some(family), Some(user), _) => Rotation::Reused { user, family },
            ("expired", _, Some(user), _) => Rotation::Expired { user },
            _ => Rotation::Unknown,
        })
    }

    async fn revoke_session(&self, family: Uuid) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let removed = self.check(
            client
                .execute(
                    &self
                        .prepared(&client, "DELETE FROM sessions WHERE family = $1")
                        .await?,
                    &[&family],
                )
                .await,
        )?;
        Ok(removed > 0)
    }

    async fn revoke_user_sessions(&self, user: &str) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let removed = self.check(
            client
                .execute(
                    &self
                        .prepared(
                            &client,
                            &format!(
                                "DELETE FROM sessions WHERE user_name = coalesce(({RESOLVE}), $1)"
                            ),
                        )
                        .await?,
                    &[&user, &canonical(user)],
                )
                .await,
        )?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }

    async fn sessions(&self, user: &str, now: UnixTime) -> Result<Vec<SessionInfo>, StoreError> {
        let client = self.client().await?;
        let rows = self.check(
            client
                .query(
                    &self
                        .prepared(
                            &client,
                            &format!(
                                "SELECT family, user_name, created, last_used FROM sessions
                         WHERE user_name = coalesce(({RESOLVE}), $1) ORDER BY created"
                            ),
                        )
                        .await?,
                    &[&user, &canonical(user)],
                )
                .await,
        )?;
        Ok(rows
            .iter()
            .map(|row| self.session_info(row.get(0), row.get(1), row.get(2), row.get(3)))
            .filter(|info| info.expires > now)
            .collect())
    }

    async fn chains_alive(&self, families: Vec<Uuid>) -> Result<Vec<Uuid>, StoreError> {
        let client = self.client().await?;
        let rows = self.check(
            client
                .query(
                    &self
                        .prepared(
                            &client,
                            "SELECT family FROM sessions WHERE family = ANY($1)",
                        )
                        .await?,
                    &[&families],
                )
                .await,
        )?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn revocations(&self) -> Option<tokio::sync::broadcast::Receiver<crate::store::Revocation>> {
        Some(PgStore::revocations(self))
    }

    fn is_unreachable(&self) -> bool {
        PgStore::is_unreachable(self)
    }

    async fn hearing_revocations(&self) {
        self.listening().await;
    }

    async fn note_visit(&self, ip: IpAddr, name: &str, now: UnixTime) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = self
            .prepared(&client, "SELECT echo_note_visit($1, $2, $3)")
            .await?;
        self.check(client.execute(&statement, &[&ip, &name, &secs(now)]).await)?;
        Ok(())
    }
}
