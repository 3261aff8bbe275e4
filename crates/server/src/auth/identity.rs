//! The authenticator's side of identification (lab task 5): names by
//! address, and the user offered to an address in `ask_auth`.

use std::net::IpAddr;

use tracing::{error, warn};

use super::{Authenticator, Reason, Refusal};
use crate::{
    store::{Identity, StoreError, UserStore},
    sys::names::validate_name,
};

/// How often a returning address's last visit is written down.
const IDENTITY_REFRESH_SECS: u64 = 86_400;

impl<S: UserStore> Authenticator<S> {
    /// Identification (lab task 5): the name known for `ip`, if any. A
    /// known address's visit is recorded at most once a day, so a returning
    /// client costs no store write.
    pub async fn known_name(&self, ip: IpAddr) -> Result<Option<String>, StoreError> {
        let now = self.clock.now();
        let Some(known) = self.store.identity(ip, now).await? else {
            return Ok(None);
        };
        self.record_visit(ip, &known.name, Some(known.seen), now)
            .await;
        Ok(Some(known.name))
    }

    /// Remembers the name a new address gave; returns it as stored.
    pub async fn name_address(&self, ip: IpAddr, name: &str) -> Result<String, Refusal> {
        let name = validate_name(name).map_err(|reason| Refusal {
            reason: Reason::InvalidName,
            message: reason,
            counts: false,
        })?;
        let now = self.clock.now();
        match self.store.remember_identity(ip, &name, now).await {
            Ok(()) => Ok(name),
            Err(StoreError::InvalidText(_)) => Err(Refusal {
                counts: false,
                ..super::unstorable_name()
            }),
            Err(err) => {
                error!(error = %err, "cannot store a name");
                Err(Refusal {
                    reason: Reason::Internal,
                    message: "the server could not save the name; try again".into(),
                    counts: false,
                })
            }
        }
    }

    /// The user last authenticated from `ip`, offered in `ask_auth`.
    #[cfg(test)]
    pub async fn suggested_user(&self, ip: IpAddr) -> Option<String> {
        self.address_identity(ip).await.map(|known| known.name)
    }

    /// What the store knows of `ip` (a failure to ask counts as nothing).
    pub async fn address_identity(&self, ip: IpAddr) -> Option<Identity> {
        match self.store.identity(ip, self.clock.now()).await {
            Ok(known) => known,
            // The store warns once per outage itself.
            Err(StoreError::Unavailable(_)) => None,
            Err(err) => {
                warn!(error = %err, "cannot look up this address");
                None
            }
        }
    }

    /// After `welcome`: the next connection from `ip` is offered `user`.
    pub async fn remember_user(&self, ip: IpAddr, user: &str) {
        let known: Option<Identity> = self
            .store
            .identity(ip, self.clock.now())
            .await
            .unwrap_or_default();
        self.remember_user_known(ip, user, known).await;
    }

    /// [`Authenticator::remember_user`], with what the store knew of `ip`
    /// already at hand (from the `ask_auth` lookup): no second lookup.
    pub async fn remember_user_known(&self, ip: IpAddr, user: &str, known: Option<Identity>) {
        let last_seen = known.filter(|k| k.name == user).map(|k| k.seen);
        self.record_visit(ip, user, last_seen, self.clock.now())
            .await;
    }

    /// Remembers `name` for `ip`, unless it was already remembered for it
    /// (`last_seen`) less than a day ago.
    async fn record_visit(&self, ip: IpAddr, name: &str, last_seen: Option<u64>, now: u64) {
        if last_seen.is_some_and(|seen| now.saturating_sub(seen) < IDENTITY_REFRESH_SECS) {
            return;
        }
        if let Err(err) = self.store.note_visit(ip, name, now).await {
            warn!(error = %err, "cannot record this address's name");
        }
    }
}
