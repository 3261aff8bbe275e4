//! The file store's state in memory: what replaying the journal builds,
//! with the indexes the store's operations need.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use uuid::Uuid;

use super::record::Record;
use crate::{
    store::{FAMILIAR_SOURCE_SECS, Lifetimes, MAX_FAMILIAR_SOURCES, TokenHash, UnixTime},
    sys::names::{canonical, confusable_key},
    sys::peer::Source,
};

/// A record that cannot be applied: the journal is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ApplyError {
    /// A token hash that is not 64 hex digits.
    #[error("a token hash is not 64 hex digits")]
    TokenHash,
}

/// Everything the store knows, in memory.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub users: HashMap<String, User>,
    /// Canonical form of each user's name → the name as stored, so any
    /// spelling of a name finds its user.
    pub canonical: HashMap<String, String>,
    /// Confusable key of each user's name → the name as stored, so a new
    /// name that looks like an existing one is refused.
    pub lookalikes: HashMap<String, String>,
    pub identities: HashMap<IpAddr, Identity>,
    pub chains: HashMap<Uuid, Chain>,
    /// Every remembered token (current or rotated away) → its chain.
    pub tokens: HashMap<TokenHash, Uuid>,
    /// Account (canonical name) → the sources it logged in from → when
    /// last.
    pub familiar: HashMap<String, HashMap<Source, UnixTime>>,
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub hash: String,
    pub created: UnixTime,
}

#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub name: String,
    pub seen: UnixTime,
}

#[derive(Debug, Clone)]
pub(crate) struct Chain {
    pub user: String,
    pub created: UnixTime,
    pub last_used: UnixTime,
    pub current: TokenHash,
    pub rotated: VecDeque<TokenHash>,
}

impl State {
    /// The stored name of the user `name` (in any spelling), if any.
    pub fn resolve<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        if self.users.contains_key(name) {
            return Some(name);
        }
        self.canonical.get(&canonical(name)).map(String::as_str)
    }

    /// Whether a new user may not be called `name`: it is, or looks like,
    /// an existing user's name.
    pub fn name_taken(&self, name: &str) -> bool {
        self.users.contains_key(name) || self.lookalikes.contains_key(&confusable_key(name))
    }

    /// Applies one record. Records are written only after they applied
    /// cleanly, so at load an error means the file was damaged.
    pub fn apply(&mut self, record: &Record) -> Result<(), ApplyError> {
        match record {
            Record::User {
                name,
                hash,
                created,
            } => self.add_user(name, hash, *created),
            Record::UserDel { name } => self.remove_user(name),
            Record::Ident { ip, name, seen } => {
                self.identities.insert(
                    *ip,
                    Identity {
                        name: name.clone(),
                        seen: *seen,
                    },
                );
            }
            Record::IdentDel { ip } => {
                self.identities.remove(ip);
            }
            Record::Session {
                chain,
                user,
                token,
                created,
                used,
                rotated,
            } => {
                let token = parse_token(token)?;
                let rotated = rotated
                    .iter()
                    .map(|t| parse_token(t))
                    .collect::<Result<VecDeque<_>, _>>()?;
                let times = (*created, *used);
                self.apply_session(*chain, user, token, rotated, times);
            }
            Record::Revoke { chain } => {
                self.revoke(*chain);
            }
            Record::RevokeUser { name } => self.revoke_user(name),
            Record::Familiar {
                account,
                source,
                seen,
            } => self.note_familiar(account, Source::of(*source), *seen),
        }
        Ok(())
    }

    /// A user created, or with a new password hash.
    fn add_user(&mut self, name: &str, hash: &str, created: UnixTime) {
        if !self.users.contains_key(name) {
            // Stores from before names were compared canonically may hold
            // two spellings: the first one keeps the index.
            self.canonical
                .entry(canonical(name))
                .or_insert_with(|| name.to_owned());
            self.lookalikes
                .entry(confusable_key(name))
                .or_insert_with(|| name.to_owned());
        }
        let user = User {
            hash: hash.to_owned(),
            created,
        };
        self.users.insert(name.to_owned(), user);
    }

    /// A user removed, with their sessions.
    fn remove_user(&mut self, name: &str) {
        self.users.remove(name);
        for (index, key) in [
            (&mut self.canonical, canonical(name)),
            (&mut self.lookalikes, confusable_key(name)),
        ] {
            if index.get(&key).map(String::as_str) == Some(name) {
                index.remove(&key);
            }
        }
        self.revoke_user(name);
    }

    /// A chain started (with the tokens it rotated away, in a compacted
    /// journal), or rotated to `token`; `(created, used)` its times.
    fn apply_session(
        &mut self,
        id: Uuid,
        user: &str,
        token: TokenHash,
        rotated: VecDeque<TokenHash>,
        (created, used): (UnixTime, UnixTime),
    ) {
        self.tokens.insert(token, id);
        match self.chains.get_mut(&id) {
            Some(chain) => {
                // Every rotated-away token is kept for the life of the
                // chain, so reuse of any of them is caught.
                let old = std::mem::replace(&mut chain.current, token);
                chain.rotated.push_back(old);
                chain.last_used = used;
            }
            None => {
                for old in &rotated {
                    self.tokens.insert(*old, id);
                }
                let chain = Chain {
                    user: user.to_owned(),
                    created,
                    last_used: used,
                    current: token,
                    rotated,
                };
                self.chains.insert(id, chain);
            }
        }
    }

    /// Forgets a chain and all its tokens; true if it existed.
    pub fn revoke(&mut self, id: Uuid) -> bool {
        let Some(chain) = self.chains.remove(&id) else {
            return false;
        };
        self.tokens.remove(&chain.current);
        for old in &chain.rotated {
            self.tokens.remove(old);
        }
        true
    }

    /// `account` logged in from `source` at `seen`; beyond
    /// [`MAX_FAMILIAR_SOURCES`], the source logged in from longest ago is
    /// forgotten.
    fn note_familiar(&mut self, account: &str, source: Source, seen: UnixTime) {
        let sources = self.familiar.entry(account.to_owned()).or_default();
        let last = sources.entry(source).or_default();
        *last = (*last).max(seen);
        if sources.len() > MAX_FAMILIAR_SOURCES
            && let Some(oldest) = sources
                .iter()
                .min_by_key(|(_, seen)| **seen)
                .map(|(s, _)| *s)
        {
            sources.remove(&oldest);
        }
    }

    /// Forgets, at `now`, the chains that have expired, the identities
    /// unseen for their lifetime and the familiar sources not logged in
    /// from for [`FAMILIAR_SOURCE_SECS`] (before a compaction).
    pub fn forget_expired(&mut self, lifetimes: Lifetimes, now: UnixTime) {
        let expired: Vec<Uuid> = self
            .chains
            .iter()
            .filter(|(_, chain)| lifetimes.expires(chain.created, chain.last_used) <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.revoke(id);
        }
        self.identities
            .retain(|_, identity| lifetimes.identity_kept(identity.seen, now));
        self.familiar.retain(|_, sources| {
            sources.retain(|_, seen| seen.saturating_add(FAMILIAR_SOURCE_SECS) > now);
            !sources.is_empty()
        });
    }

    fn revoke_user(&mut self, name: &str) {
        let chains: Vec<Uuid> = self
            .chains
            .iter()
            .filter(|(_, chain)| chain.user == name)
            .map(|(id, _)| *id)
            .collect();
        for id in chains {
            self.revoke(id);
        }
    }

    /// The records that rebuild this state, for compaction.
    pub fn snapshot(&self) -> Vec<Record> {
        let users = self.users.iter().map(|(name, user)| Record::User {
            name: name.clone(),
            hash: user.hash.clone(),
            created: user.created,
        });
        let identities = self.identities.iter().map(|(ip, identity)| Record::Ident {
            ip: *ip,
            name: identity.name.clone(),
            seen: identity.seen,
        });
        let sessions = self.chains.iter().map(|(id, chain)| Record::Session {
            chain: *id,
            user: chain.user.clone(),
            token: chain.current.to_hex(),
            created: chain.created,
            used: chain.last_used,
            rotated: chain.rotated.iter().map(|t| t.to_hex()).collect(),
        });
        let familiar = self.familiar.iter().flat_map(|(account, sources)| {
            sources.iter().map(|(source, seen)| Record::Familiar {
                account: account.clone(),
                source: source.address(),
                seen: *seen,
            })
        });
        users
            .chain(identities)
            .chain(sessions)
            .chain(familiar)
            .collect()
    }

    /// How many records a compacted journal of this state holds.
    pub fn live_records(&self) -> usize {
        let familiar: usize = self.familiar.values().map(HashMap::len).sum();
        self.users.len() + self.identities.len() + self.chains.len() + familiar
    }
}

fn parse_token(hex: &str) -> Result<TokenHash, ApplyError> {
    TokenHash::from_hex(hex).ok_or(ApplyError::TokenHash)
}
