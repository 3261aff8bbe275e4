//! The authenticator's side of the attempt ledger: which limits a password
//! attempt answers to, and what its outcome leaves behind (a failure
//! counted, or the source remembered as one the account logged in from).

use std::net::IpAddr;

use tracing::warn;

use super::{Authenticator, Refusal, rate_limited, refused_by_store};
use crate::{ops::logging::shown, store::UserStore, store::ledger::Attempt, sys::clock::UnixTime};

/// How often a familiar source's last login is written down again.
const FAMILIAR_REFRESH_SECS: u64 = 86_400;

/// What the limits said about a password attempt that may go ahead.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cleared {
    /// Whether the account logged in from this source before.
    pub familiar: bool,
    /// When it last did, as the store remembers it.
    last_seen: Option<UnixTime>,
}

impl<S: UserStore> Authenticator<S> {
    /// Takes one attempt from the source's allowance, then asks whether the
    /// account may try a password from this source now (`user` is the name
    /// as typed, for the log).
    pub(super) async fn clear_limits(
        &self,
        account: &str,
        ip: IpAddr,
        now: UnixTime,
        user: &str,
    ) -> Result<Cleared, Refusal> {
        self.ledger
            .charge_address(ip, (self.attempt_rate)(), now)
            .await
            .map_err(refused_by_store)?
            .map_err(rate_limited)?;
        let last_seen = self
            .store
            .familiar_since(account, ip, now)
            .await
            .map_err(refused_by_store)?;
        let familiar = last_seen.is_some();
        self.ledger
            .check_account(Attempt::new(account, ip, familiar), now)
            .await
            .map_err(refused_by_store)?
            .map_err(|limit| {
                warn!(user = %shown(user), familiar, "login refused: account is backing off from this source");
                rate_limited(limit)
            })?;
        Ok(Cleared {
            familiar,
            last_seen,
        })
    }

    /// A wrong password for an existing account.
    pub(super) async fn count_failure(
        &self,
        account: &str,
        ip: IpAddr,
        cleared: Cleared,
        now: UnixTime,
    ) -> Result<(), Refusal> {
        self.ledger
            .record_failure(Attempt::new(account, ip, cleared.familiar), now)
            .await
            .map_err(refused_by_store)
    }

    /// The right password: the run of failures from this source is over,
    /// and the source is (still) one the account logged in from.
    pub(super) async fn count_success(
        &self,
        account: &str,
        ip: IpAddr,
        cleared: Cleared,
        now: UnixTime,
    ) {
        let attempt = Attempt::new(account, ip, cleared.familiar);
        if let Err(err) = self.ledger.record_success(attempt).await {
            warn!(error = %err, "cannot clear the account's failures");
        }
        self.remember_source(account, ip, cleared.last_seen, now)
            .await;
    }

    /// Remembers that `account` got in from `ip`'s source, unless that was
    /// written down (`last_seen`) less than a day ago.
    pub(super) async fn remember_source(
        &self,
        account: &str,
        ip: IpAddr,
        last_seen: Option<UnixTime>,
        now: UnixTime,
    ) {
        if last_seen.is_some_and(|seen| now.saturating_sub(seen) < FAMILIAR_REFRESH_SECS) {
            return;
        }
        if let Err(err) = self.store.note_familiar(account, ip, now).await {
            warn!(error = %err, "cannot remember the source of a login");
        }
    }
}
