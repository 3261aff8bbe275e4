//! The authenticator: the one place where the store, the attempt ledger and
//! passwords meet (lab tasks 5 and 6). It takes what a client asked for and
//! returns a decision, a [`Grant`] or a [`Refusal`] with its [`Reason`] (the
//! session maps it to a wire error code); it never touches a socket, so it is tested without one.
//!
//! - [`passwords`]: Argon2id hashing and the rules for new passwords.
//! - [`tokens`]: fresh session tokens.
//! - [`ledger`]: attempt limits per account and per address, behind a seam.
//! - `identity.rs`: names by address (identification, the suggested user).
//! - `limits.rs`: which limits a password attempt answers to, and what its
//!   outcome leaves in the ledger and the store.

mod argon;
mod identity;

mod limits;
pub mod passwords;
mod refusal;
pub mod tokens;
mod workers;

use std::{net::IpAddr, sync::Arc};

use echo_proto::Secret;
use tracing::{error, info, warn};
use uuid::Uuid;

pub use crate::store::ledger::{AttemptLedger, MemoryLedger};
use crate::sys::names::canonical;
pub use crate::sys::names::validate_name;
pub use passwords::{HashError, MAX_PASSWORD_BYTES, Passwords, check_password};
pub use refusal::{Reason, Refusal, unavailable};
use refusal::{
    internal, name_taken, rate_limited, refused_by_store, token_invalid, unstorable_name,
};
pub use tokens::new_token;

use crate::store::{EndCause, Rotation, SessionInfo, StoreError, TokenHash, UserRecord, UserStore};
use crate::{
    live::sessions::LiveSessions,
    ops::logging::shown,
    ops::metrics::{AuthFailure, Metrics, Revoked},
    sys::clock::{Clock, UnixTime},
};

/// Password attempts a minute one source may make, as the settings in
/// force say (`auth_attempts_per_minute`); asked at each attempt, so a
/// reload applies to the next one.
pub type AttemptRate = Arc<dyn Fn() -> u32 + Send + Sync>;

/// Failed attempts one connection may make before `bye`.
pub const ATTEMPTS_PER_CONNECTION: u32 = 5;

/// Identifies and authenticates clients over a store: a cheap `Clone`.
#[derive(Clone)]
pub struct Authenticator<S> {
    store: S,
    passwords: Passwords,
    ledger: Arc<dyn AttemptLedger>,
    attempt_rate: AttemptRate,
    clock: Arc<dyn Clock>,
    min_password_length: usize,
    live: Arc<LiveSessions>,
    metrics: Arc<Metrics>,
}

/// A successful `resume`, `login` or `register`: the token to hand to the
/// client (its hash is in the store) and the session it belongs to.
#[derive(Debug)]
pub struct Grant {
    /// The new session token.
    pub token: Secret,
    /// The session chain.
    pub session: SessionInfo,
}

impl<S: UserStore> Authenticator<S> {
    /// An authenticator over `store`, counting attempts in `ledger`,
    /// `attempt_rate` a minute from one source.
    pub fn new(
        store: S,
        passwords: Passwords,
        (ledger, attempt_rate): (Arc<dyn AttemptLedger>, AttemptRate),
        clock: Arc<dyn Clock>,
        min_password_length: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            passwords,
            ledger,
            attempt_rate,
            clock,
            min_password_length,
            live: Arc::default(),
            metrics,
        }
    }

    /// The live sessions a revocation ends.
    pub fn live(&self) -> &Arc<LiveSessions> {
        &self.live
    }

    /// The clock everything here reads.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// `resume`: rotates the token if it is the current one of a live chain.
    pub async fn resume(&self, token: &Secret) -> Result<Grant, Refusal> {
        let now = self.clock.now();
        let next = new_token();
        let rotation = self
            .store
            .rotate_session(
                TokenHash::of(token.expose()),
                TokenHash::of(next.expose()),
                now,
            )
            .await
            .map_err(refused_by_store)?;
        match rotation {
            Rotation::Rotated(session) => {
                info!(user = %shown(&session.user), family = %session.chain, "session resumed; token rotated");
                Ok(Grant {
                    token: next,
                    session,
                })
            }
            Rotation::Reused { user, chain } => {
                self.metrics.auth_failure(AuthFailure::token_reused);
                self.metrics.revoked(Revoked::reused);
                let ended = self.live.revoke_chain(chain, Some(EndCause::Reuse));
                warn!(user = %shown(&user), family = %chain, connections_ended = ended, "a rotated-away token was presented: session chain revoked");
                Err(token_invalid())
            }
            Rotation::Expired { user, chain } => {
                self.metrics.auth_failure(AuthFailure::token_invalid);
                // A connection the chain still holds open ends with it.
                let ended = self.live.revoke_chain(chain, Some(EndCause::Expired));
                info!(user = %shown(&user), connections_ended = ended, "resume refused: session expired");
                Err(token_invalid())
            }
            Rotation::Unknown => {
                self.metrics.auth_failure(AuthFailure::token_invalid);
                info!("resume refused: unknown token");
                Err(token_invalid())
            }
        }
    }

    /// `login`: checks the limits (the source's allowance, the account's
    /// failures from this source, and for a source the account never
    /// logged in from its ceiling of such failures), then the password, then
    /// opens a session.
    pub async fn login(&self, user: &str, password: Secret, ip: IpAddr) -> Result<Grant, Refusal> {
        let outcome = self.try_login(user, password, ip).await;
        if let Err(refusal) = &outcome {
            self.metrics.auth_failure(refusal.reason.failure());
        }
        outcome
    }

    async fn try_login(&self, user: &str, password: Secret, ip: IpAddr) -> Result<Grant, Refusal> {
        let now = self.clock.now();
        let user = user.trim();
        let shown = shown(user);
        // The account's failures count under its canonical name, whatever
        // the spelling tried.
        let account = canonical(user);
        let cleared = self.clear_limits(&account, ip, now, user).await?;
        let record = self.store.user(user).await.map_err(refused_by_store)?;
        let exists = record.is_some();
        // The name as registered: sessions and logs use it.
        let user = record
            .as_ref()
            .map_or(user, |record| record.name.as_str())
            .to_owned();
        let hash = record
            .filter(|_| password.expose().len() <= MAX_PASSWORD_BYTES)
            .map(|record| record.password_hash);
        let started = std::time::Instant::now();
        let verified = self.passwords.verify(password, hash).await;
        self.metrics
            .password_hash_seconds
            .observe(started.elapsed().as_secs_f64());
        let matches = verified.map_err(|err| {
            error!(error = %err, "password check failed");
            internal()
        })?;
        if !matches {
            // Only real accounts are tracked: junk names cannot crowd them out.
            if exists {
                self.count_failure(&account, ip, cleared, now).await?;
            }
            warn!(user = %shown, "login failed");
            return Err(Refusal {
                reason: Reason::InvalidCredentials,
                message: "wrong user name or password".into(),
                counts: true,
            });
        }
        self.count_success(&account, ip, cleared, now).await;
        let token = new_token();
        let session = self
            .store
            .create_session(TokenHash::of(token.expose()), &user, now)
            .await
            .map_err(refused_by_store)?;
        info!(user = %shown, "logged in");
        Ok(Grant { token, session })
    }

    /// `register`: checks the name and whether it is free, takes one
    /// attempt from the address's allowance, checks the password's strength
    /// (the estimate and the hash run off the async threads), hashes it and
    /// creates the user and their first session in one store change. A
    /// refusal before the hash (a bad or taken name, a weak password) uses
    /// up none of the connection's attempts: no password was checked. The
    /// address's allowance pays for password work, so a refused name does
    /// not touch it, and a weak password (whose strength estimate is such
    /// work, up to a quarter of a second) does.
    pub async fn register(
        &self,
        user: &str,
        password: Secret,
        ip: IpAddr,
    ) -> Result<Grant, Refusal> {
        let outcome = self.try_register(user, password, ip).await;
        if let Err(refusal) = &outcome {
            self.metrics.auth_failure(refusal.reason.failure());
            info!(user = %shown(user), code = ?refusal.reason, "registration refused");
        }
        outcome
    }

    async fn try_register(
        &self,
        user: &str,
        password: Secret,
        ip: IpAddr,
    ) -> Result<Grant, Refusal> {
        let now = self.clock.now();
        let name = self.check_new_account(user, &password, ip, now).await?;
        let started = std::time::Instant::now();
        let hashed = self.passwords.hash(password).await;
        self.metrics
            .password_hash_seconds
            .observe(started.elapsed().as_secs_f64());
        let password_hash = hashed.map_err(|err| {
            error!(error = %err, "password hashing failed");
            internal()
        })?;
        let record = UserRecord {
            name: name.clone(),
            password_hash,
            created: now,
        };
        let token = new_token();
        match self
            .store
            .register(record, TokenHash::of(token.expose()))
            .await
        {
            Ok(session) => {
                info!(user = %shown(&name), "registered");
                self.remember_source(&canonical(&name), ip, None, now).await;
                Ok(Grant { token, session })
            }
            Err(StoreError::NameTaken(_)) => Err(name_taken(&name)),
            Err(err) => Err(refused_by_store(err)),
        }
    }

    /// A new account's name (valid, and free) and password (strong enough),
    /// cheapest check first, the address charged before the password's
    /// strength is estimated: the name as it is to be registered. No refusal
    /// for the name or the password counts against the connection.
    async fn check_new_account(
        &self,
        user: &str,
        password: &Secret,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<String, Refusal> {
        let refused = |reason, message| Refusal {
            reason,
            message,
            counts: false,
        };
        let name = validate_name(user).map_err(|why| refused(Reason::InvalidName, why))?;
        if self
            .store
            .user(&name)
            .await
            .map_err(refused_by_store)?
            .is_some()
        {
            return Err(name_taken(&name));
        }
        self.ledger
            .charge_address(ip, (self.attempt_rate)(), now)
            .await
            .map_err(refused_by_store)?
            .map_err(rate_limited)?;
        self.passwords
            .check_new(&name, password, self.min_password_length)
            .await
            .map_err(|err| {
                error!(error = %err, "password strength check failed");
                internal()
            })?
            .map_err(|why| refused(Reason::WeakPassword, why))?;
        Ok(name)
    }

    /// `logout`: revokes the chain.
    pub async fn logout(&self, chain: Uuid) {
        match self.store.revoke_session(chain, EndCause::Logout).await {
            Ok(_) => {
                self.metrics.revoked(Revoked::logout);
                let ended = self.live.revoke_chain(chain, Some(EndCause::Logout));
                info!(family = %chain, connections_ended = ended, "logged out: session revoked");
            }
            Err(err) => error!(error = %err, "logout: cannot revoke the session"),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Authenticator<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("store", &self.store)
            .field("ledger", &self.ledger)
            .field("attempts_per_minute", &(self.attempt_rate)())
            .field("min_password_length", &self.min_password_length)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
