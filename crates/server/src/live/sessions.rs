//! The live sessions of this server, by session chain, so that revoking a
//! chain (a reused token, a `logout` on another connection; the admin
//! commands once they reach a running server) ends every connection it
//! authenticated, at once, with `bye {reason: "revoked"}` and the cause
//! ([`EndCause`]) carried from where the chain ended.
//!
//! With a shared store, [`follow_revocations`] does the same for chains
//! ended on other servers or by admin commands.
//!
//! A connection registers when it is established and holds a [`Watch`];
//! dropping the watch takes it out again, on every path.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use crate::{
    store::{EndCause, Revocation, UserStore},
    sys::sync::lock,
};

/// Why a connection was stopped from outside its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Its session chain was revoked, for this cause when it is known.
    Revoked(Option<EndCause>),
    /// An operator kicked it.
    Kicked,
}

/// Stops one connection from outside (a revocation, a kick): its wire
/// waits on the token and ends with the reason given first.
#[derive(Debug, Clone, Default)]
pub struct Stopper {
    token: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

impl Stopper {
    /// A stopper whose token `shutdown` cancels too (with no reason given):
    /// waiting on its token is waiting on both.
    pub fn within(shutdown: &CancellationToken) -> Self {
        Self {
            token: shutdown.child_token(),
            reason: Arc::default(),
        }
    }

    /// Stops the connection for `reason` (the first reason given stays).
    pub fn stop(&self, reason: StopReason) {
        lock(&self.reason).get_or_insert(reason);
        self.token.cancel();
    }

    /// Why it was stopped, once it was.
    pub fn reason(&self) -> Option<StopReason> {
        *lock(&self.reason)
    }

    /// Cancelled when the connection is stopped.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

/// How long a revoked chain is remembered, so that a connection that
/// registers just after its chain was revoked (the revocation heard between
/// the store's answer and the registration) is stopped too.
const REMEMBER_ENDED: Duration = Duration::from_secs(60);
/// Most revoked chains remembered at once.
const MAX_ENDED: usize = 100_000;

/// Every established connection authenticated by a session chain.
#[derive(Debug, Default)]
pub struct LiveSessions {
    chains: Mutex<HashMap<Uuid, Chain>>,
    next_id: AtomicU64,
    ended: Mutex<Ended>,
}

/// Chains revoked lately (oldest first), and why.
#[derive(Debug, Default)]
struct Ended {
    order: VecDeque<(Instant, Uuid)>,
    chain_ids: HashMap<Uuid, Option<EndCause>>,
}

impl Ended {
    fn insert(&mut self, chain_id: Uuid, cause: Option<EndCause>) {
        let now = Instant::now();
        while let Some(&(at, old)) = self.order.front() {
            if now.duration_since(at) < REMEMBER_ENDED && self.order.len() < MAX_ENDED {
                break;
            }
            self.order.pop_front();
            self.chain_ids.remove(&old);
        }
        if let std::collections::hash_map::Entry::Vacant(entry) = self.chain_ids.entry(chain_id) {
            entry.insert(cause);
            self.order.push_back((now, chain_id));
        }
    }
}

#[derive(Debug)]
struct Chain {
    user: String,
    connections: Vec<(u64, Stopper)>,
}

/// One connection's place in [`LiveSessions`]; its token is cancelled when
/// the chain is revoked.
#[derive(Debug)]
pub struct Watch {
    sessions: Arc<LiveSessions>,
    chain: Uuid,
    id: u64,
}

impl LiveSessions {
    /// Registers a connection of `user` authenticated by chain `chain_id`;
    /// a revocation stops it through `stopper`.
    pub fn watch(self: &Arc<Self>, chain_id: Uuid, user: &str, stopper: Stopper) -> Watch {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut chains = lock(&self.chains);
        if let Some(&cause) = lock(&self.ended).chain_ids.get(&chain_id) {
            stopper.stop(StopReason::Revoked(cause));
        }
        let chain = chains.entry(chain_id).or_insert_with(|| Chain {
            user: user.to_owned(),
            // Most chains have one connection: room for one, not four.
            connections: Vec::with_capacity(1),
        });
        chain.connections.push((id, stopper));
        Watch {
            sessions: Arc::clone(self),
            chain: chain_id,
            id,
        }
    }

    /// Ends every live connection of chain `chain_id`, saying `cause` when
    /// it is known; returns how many.
    pub fn revoke_chain(&self, chain_id: Uuid, cause: Option<EndCause>) -> usize {
        let mut chains = lock(&self.chains);
        lock(&self.ended).insert(chain_id, cause);
        let chain = chains.remove(&chain_id);
        drop(chains);
        chain.map_or(0, |chain| cancel_all(&chain, cause))
    }

    /// Ends every live connection of `user` for `cause`; returns how many.
    pub fn revoke_user(&self, user: &str, cause: EndCause) -> usize {
        let mut chains = lock(&self.chains);
        let chain_ids: Vec<Uuid> = chains
            .iter()
            .filter(|(_, chain)| chain.user == user)
            .map(|(chain_id, _)| *chain_id)
            .collect();
        chain_ids
            .into_iter()
            .filter_map(|chain_id| chains.remove(&chain_id))
            .map(|chain| cancel_all(&chain, Some(cause)))
            .sum()
    }

    /// The chains with live connections now.
    pub fn chain_ids(&self) -> Vec<Uuid> {
        lock(&self.chains).keys().copied().collect()
    }

    /// Connections registered now (for tests).
    pub fn len(&self) -> usize {
        lock(&self.chains)
            .values()
            .map(|chain| chain.connections.len())
            .sum()
    }

    /// Whether no connection is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Ends this server's connections of the chains a shared store says ended
/// elsewhere, until `stop`. After revocations may have been missed, every
/// live chain is checked against the store.
pub async fn follow_revocations<S: UserStore>(
    live: Arc<LiveSessions>,
    store: S,
    mut revocations: broadcast::Receiver<Revocation>,
    stop: CancellationToken,
) {
    loop {
        let heard = tokio::select! {
            () = stop.cancelled() => return,
            heard = revocations.recv() => heard,
        };
        match heard {
            Ok(Revocation::Chain(chain_id, cause)) => {
                let ended = live.revoke_chain(chain_id, cause);
                if ended > 0 {
                    // The log field keeps its name from before "chain" was the
                    // word (`family`): log readers rely on it.
                    info!(family = %chain_id, connections_ended = ended, "session chain ended elsewhere: revoked here too");
                }
            }
            Ok(Revocation::Resync) | Err(RecvError::Lagged(_)) => {
                let chain_ids = live.chain_ids();
                match store.chains_alive(chain_ids.clone()).await {
                    Ok(alive) => {
                        let ended: usize = chain_ids
                            .iter()
                            .filter(|chain_id| !alive.contains(chain_id))
                            .map(|chain_id| live.revoke_chain(*chain_id, None))
                            .sum();
                        info!(
                            checked = chain_ids.len(),
                            connections_ended = ended,
                            "live sessions re-checked against the store"
                        );
                    }
                    Err(err) => warn!(error = %err, "cannot re-check live sessions"),
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

fn cancel_all(chain: &Chain, cause: Option<EndCause>) -> usize {
    for (_, stopper) in &chain.connections {
        stopper.stop(StopReason::Revoked(cause));
    }
    chain.connections.len()
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut chains = lock(&self.sessions.chains);
        if let Some(chain) = chains.get_mut(&self.chain) {
            chain.connections.retain(|(id, _)| *id != self.id);
            if chain.connections.is_empty() {
                chains.remove(&self.chain);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoking_a_chain_or_a_user_ends_their_connections_only() {
        let live = Arc::new(LiveSessions::default());
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let stoppers = [Stopper::default(), Stopper::default(), Stopper::default()];
        let first = live.watch(a, "ann", stoppers[0].clone());
        let second = live.watch(a, "ann", stoppers[1].clone());
        let other = live.watch(b, "bob", stoppers[2].clone());
        assert_eq!(live.revoke_chain(a, Some(EndCause::Reuse)), 2);
        let reused = Some(StopReason::Revoked(Some(EndCause::Reuse)));
        assert_eq!(stoppers[0].reason(), reused);
        assert!(stoppers[1].token().is_cancelled());
        assert!(!stoppers[2].token().is_cancelled());
        assert_eq!(live.revoke_user("bob", EndCause::PasswordChanged), 1);
        let changed = Some(StopReason::Revoked(Some(EndCause::PasswordChanged)));
        assert_eq!(stoppers[2].reason(), changed);
        drop((first, second, other));
        assert!(live.is_empty());
    }

    #[test]
    fn a_connection_registered_just_after_its_chain_was_revoked_is_stopped() {
        let live = Arc::new(LiveSessions::default());
        let chain_id = Uuid::new_v4();
        assert_eq!(live.revoke_chain(chain_id, Some(EndCause::Logout)), 0);
        let stopper = Stopper::default();
        let _watch = live.watch(chain_id, "ann", stopper.clone());
        let logout = Some(StopReason::Revoked(Some(EndCause::Logout)));
        assert_eq!(stopper.reason(), logout);
        let other = Stopper::default();
        let _other = live.watch(Uuid::new_v4(), "ann", other.clone());
        assert_eq!(other.reason(), None);
    }

    #[test]
    fn a_connection_that_ends_leaves_the_registry() {
        let live = Arc::new(LiveSessions::default());
        let chain_id = Uuid::new_v4();
        let watch = live.watch(chain_id, "ann", Stopper::default());
        assert_eq!(live.len(), 1);
        drop(watch);
        assert_eq!(live.revoke_chain(chain_id, None), 0);
    }
}
