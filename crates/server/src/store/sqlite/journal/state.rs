//! The journal store's state: what replaying its journal builds, with the
//! indexes replaying needs (any spelling of a name finds its user).

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use uuid::Uuid;

use super::record::Record;
use crate::{
    store::{MAX_FAMILIAR_SOURCES, TokenHash, UnixTime},
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
}

fn parse_token(hex: &str) -> Result<TokenHash, ApplyError> {
    TokenHash::from_hex(hex).ok_or(ApplyError::TokenHash)
}
