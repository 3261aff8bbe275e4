//! [`UserStore`] for [`PgStore`]: one statement (or one function call) per
//! operation, each its own transaction, so a change is durable when it
//! returns (`synchronous_commit` as the database has it).
//!
//! A session chain's id is the `family` column of `sessions` and
//! `session_tokens` (and `r_family` of `echo_rotate`): "family" is the
//! chain's older name, kept in the schema, which is a stored format.

use std::net::IpAddr;

use uuid::Uuid;

use super::{
    Param, PgStore,
    rows::{secs, storable, unix, unmatched},
};
use crate::{
    store::{
        EndCause, FAMILIAR_SOURCE_SECS, Identity, MAX_FAMILIAR_SOURCES, MAX_ROTATIONS_PER_CHAIN,
        Rotation, SessionInfo, StoreError, TokenHash, UnixTime, UserRecord, UserStore,
    },
    sys::names::canonical,
    sys::peer::Source,
};

/// The stored name of the user `$1` (canonical form `$2`), in any spelling:
/// the exact name first. A macro, so that each statement is one constant.
macro_rules! resolve {
    () => {
        "SELECT name FROM users WHERE name = $1 OR canonical = $2 ORDER BY name = $1 DESC LIMIT 1"
    };
}

/// How often each server deletes what has expired.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl PgStore {
    /// Deletes the chains that have expired and the addresses unseen for
    /// their lifetime at `now`, without announcing the chains as revoked,
    /// and the familiar sources not logged in from for
    /// [`FAMILIAR_SOURCE_SECS`]; returns how many chains and addresses.
    pub async fn sweep(&self, now: UnixTime) -> Result<(u64, u64), StoreError> {
        let deadline = self.deadline();
        let mut client = self.client(deadline).await?;
        let outcome = tokio::time::timeout_at(deadline, self.sweep_on(&mut client, now)).await;
        self.settle(client, outcome)
    }

    async fn sweep_on(
        &self,
        client: &mut deadpool_postgres::Object,
        now: UnixTime,
    ) -> Result<(u64, u64), StoreError> {
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
        self.check(
            tx.execute(
                "DELETE FROM familiar_sources WHERE seen <= $1",
                &[&secs(now.saturating_sub(FAMILIAR_SOURCE_SECS))],
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
            let now = crate::sys::clock::Clock::now(&crate::sys::clock::SystemClock);
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
        let row = self
            .row("SELECT name, seen FROM identities WHERE ip = $1", &[&ip])
            .await?;
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
        let sql = "INSERT INTO identities (ip, name, seen) VALUES ($1, $2, $3)
                   ON CONFLICT (ip) DO UPDATE SET name = EXCLUDED.name, seen = EXCLUDED.seen";
        self.run(sql, &[&ip, &name, &secs(now)]).await.map(drop)
    }

    async fn identities(&self, now: UnixTime) -> Result<Vec<(IpAddr, Identity)>, StoreError> {
        let sql = "SELECT ip, name, seen FROM identities WHERE seen > $1 ORDER BY ip";
        let kept_since = secs(now.saturating_sub(self.inner.lifetimes.identity));
        let rows = self.rows(sql, &[&kept_since]).await?;
        let lifetimes = self.inner.lifetimes;
        Ok(rows
            .iter()
            .map(|row| {
                let identity = Identity {
                    name: row.get(1),
                    seen: unix(row.get(2)),
                };
                (row.get(0), identity)
            })
            .filter(|(_, known)| lifetimes.identity_kept(known.seen, now))
            .collect())
    }

    async fn forget_identity(&self, ip: IpAddr) -> Result<bool, StoreError> {
        let sql = "DELETE FROM identities WHERE ip = $1";
        Ok(self.run(sql, &[&ip]).await? > 0)
    }

    async fn note_visit(&self, ip: IpAddr, name: &str, now: UnixTime) -> Result<(), StoreError> {
        let sql = "SELECT echo_note_visit($1, $2, $3)";
        self.run(sql, &[&ip, &name, &secs(now)]).await.map(drop)
    }

    async fn familiar_since(
        &self,
        account: &str,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<Option<UnixTime>, StoreError> {
        let sql = "SELECT seen FROM familiar_sources WHERE account = $1 AND source = $2";
        if !storable(account) {
            return Ok(None);
        }
        let source = Source::of(ip).address();
        let row = self.row(sql, &[&account, &source]).await?;
        Ok(row
            .map(|row| unix(row.get(0)))
            .filter(|seen| seen.saturating_add(FAMILIAR_SOURCE_SECS) > now))
    }

    async fn note_familiar(
        &self,
        account: &str,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let sql = "SELECT echo_note_familiar($1, $2, $3, $4)";
        let source = Source::of(ip).address();
        let keep = i32::try_from(MAX_FAMILIAR_SOURCES).unwrap_or(i32::MAX);
        let params: [&Param<'_>; 4] = [&account, &source, &secs(now), &keep];
        self.run(sql, &params).await.map(drop)
    }

    async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let sql = concat!(
            "SELECT name, password_hash, created FROM users WHERE name = (",
            resolve!(),
            ")"
        );
        if !storable(name) {
            return Ok(None);
        }
        let row = unmatched(self.row(sql, &[&name, &canonical(name)]).await)?;
        Ok(row.as_ref().map(Self::user_record))
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let sql = "SELECT name, password_hash, created FROM users ORDER BY name COLLATE \"C\"";
        let rows = self.rows(sql, &[]).await?;
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
        let chain = Uuid::new_v4();
        let (name, now) = (user.name.clone(), secs(user.created));
        self.insert_user(user, Some((chain, token))).await?;
        Ok(self.session_info(chain, name, now, now))
    }

    async fn set_password(&self, name: &str, password_hash: String) -> Result<(), StoreError> {
        // echo_ending names the cause the trigger announces (migration 4).
        let sql = concat!(
            "WITH u AS (UPDATE users SET password_hash = $3 WHERE name = (",
            resolve!(),
            ") RETURNING name),
                  d AS (DELETE FROM sessions
                        WHERE user_name IN (SELECT name FROM u) AND echo_ending($4))
             SELECT name FROM u"
        );
        let cause = EndCause::PasswordChanged.as_str();
        let params: [&Param<'_>; 4] = [&name, &canonical(name), &password_hash, &cause];
        let row = unmatched(self.row(sql, &params).await)?;
        row.map(drop)
            .ok_or_else(|| StoreError::NoSuchUser(name.to_owned()))
    }

    async fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        let sql = concat!(
            "DELETE FROM users WHERE name = (",
            resolve!(),
            ") AND echo_ending($3)"
        );
        let cause = EndCause::Operator.as_str();
        match unmatched(self.run(sql, &[&name, &canonical(name), &cause]).await)? {
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
        let chain = Uuid::new_v4();
        let sql = concat!(
            "WITH s AS (
                INSERT INTO sessions (family, user_name, created, last_used, current)
                SELECT $3, name, $4, $4, $5 FROM (",
            resolve!(),
            ") u RETURNING family, user_name),
             t AS (INSERT INTO session_tokens (hash, family) SELECT $5, family FROM s)
             SELECT user_name FROM s"
        );
        let params: [&Param<'_>; 5] = [
            &user,
            &canonical(user),
            &chain,
            &secs(now),
            &token.0.as_slice(),
        ];
        let name: String = unmatched(self.row(sql, &params).await)?
            .ok_or_else(|| StoreError::NoSuchUser(user.to_owned()))?
            .get(0);
        Ok(self.session_info(chain, name, secs(now), secs(now)))
    }

    async fn rotate_session(
        &self,
        presented: TokenHash,
        next: TokenHash,
        now: UnixTime,
    ) -> Result<Rotation, StoreError> {
        let lifetimes = self.inner.lifetimes;
        let max = i32::try_from(MAX_ROTATIONS_PER_CHAIN).unwrap_or(i32::MAX);
        let params: [&Param<'_>; 6] = [
            &presented.0.as_slice(),
            &next.0.as_slice(),
            &secs(now),
            &secs(lifetimes.idle),
            &secs(lifetimes.absolute),
            &max,
        ];
        let sql = "SELECT * FROM echo_rotate($1, $2, $3, $4, $5, $6)";
        let row = self
            .row(sql, &params)
            .await?
            .ok_or_else(|| StoreError::Database("echo_rotate returned no row".into()))?;
        let outcome: &str = row.get(0);
        let chain: Option<Uuid> = row.get(1);
        let user: Option<String> = row.get(2);
        let created: Option<i64> = row.get(3);
        Ok(match (outcome, chain, user, created) {
            ("rotated", Some(chain), Some(user), Some(created)) => {
                Rotation::Rotated(self.session_info(chain, user, created, secs(now)))
            }
            ("reused", Some(chain), Some(user), _) => Rotation::Reused { user, chain },
            ("expired", Some(chain), Some(user), _) => Rotation::Expired { user, chain },
            _ => Rotation::Unknown,
        })
    }

    async fn revoke_session(&self, chain: Uuid, cause: EndCause) -> Result<bool, StoreError> {
        let sql = "DELETE FROM sessions WHERE family = $1 AND echo_ending($2)";
        Ok(self.run(sql, &[&chain, &cause.as_str()]).await? > 0)
    }

    async fn revoke_user_sessions(&self, user: &str) -> Result<usize, StoreError> {
        let sql = concat!(
            "DELETE FROM sessions WHERE user_name = coalesce((",
            resolve!(),
            "), $1) AND echo_ending($3)"
        );
        let cause = EndCause::Operator.as_str();
        let removed = unmatched(self.run(sql, &[&user, &canonical(user), &cause]).await)?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }

    async fn sessions(&self, user: &str, now: UnixTime) -> Result<Vec<SessionInfo>, StoreError> {
        let sql = concat!(
            "SELECT family, user_name, created, last_used FROM sessions
             WHERE user_name = coalesce((",
            resolve!(),
            "), $1) ORDER BY created"
        );
        let rows = unmatched(self.rows(sql, &[&user, &canonical(user)]).await)?;
        Ok(rows
            .iter()
            .map(|row| self.session_info(row.get(0), row.get(1), row.get(2), row.get(3)))
            .filter(|info| info.expires > now)
            .collect())
    }

    async fn chains_alive(&self, chains: Vec<Uuid>) -> Result<Vec<Uuid>, StoreError> {
        let sql = "SELECT family FROM sessions WHERE family = ANY($1)";
        let rows = self.rows(sql, &[&chains]).await?;
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
}
