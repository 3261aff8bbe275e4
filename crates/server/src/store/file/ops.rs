//! [`UserStore`] for [`FileStore`]: reads from memory, each change as
//! journal records.

use std::net::IpAddr;

use uuid::Uuid;

use super::{FileStore, record::Record, state::Chain};
use crate::{
    store::{
        EndCause, FAMILIAR_SOURCE_SECS, Identity, Lifetimes, MAX_ROTATIONS_PER_CHAIN, Rotation,
        SessionInfo, StoreError, TokenHash, UnixTime, UserRecord, UserStore,
    },
    sys::peer::Source,
};

fn session_info(id: Uuid, chain: &Chain, lifetimes: Lifetimes) -> SessionInfo {
    SessionInfo {
        chain: id,
        user: chain.user.clone(),
        created: chain.created,
        last_used: chain.last_used,
        expires: lifetimes.expires(chain.created, chain.last_used),
    }
}

impl UserStore for FileStore {
    async fn identity(&self, ip: IpAddr, now: UnixTime) -> Result<Option<Identity>, StoreError> {
        let lifetimes = self.inner.lifetimes;
        Ok(self.read(|state| {
            let known = state.identities.get(&ip)?;
            lifetimes.identity_kept(known.seen, now).then(|| Identity {
                name: known.name.clone(),
                seen: known.seen,
            })
        }))
    }

    async fn remember_identity(
        &self,
        ip: IpAddr,
        name: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let record = Record::Ident {
            ip,
            name: name.to_owned(),
            seen: now,
        };
        self.write(|_| Ok((vec![record], ()))).await
    }

    async fn identities(&self, now: UnixTime) -> Result<Vec<(IpAddr, Identity)>, StoreError> {
        let lifetimes = self.inner.lifetimes;
        let mut known = self.read(|state| {
            state
                .identities
                .iter()
                .filter(|(_, known)| lifetimes.identity_kept(known.seen, now))
                .map(|(ip, known)| {
                    let identity = Identity {
                        name: known.name.clone(),
                        seen: known.seen,
                    };
                    (*ip, identity)
                })
                .collect::<Vec<_>>()
        });
        known.sort_by_key(|(ip, _)| *ip);
        Ok(known)
    }

    async fn forget_identity(&self, ip: IpAddr) -> Result<bool, StoreError> {
        self.write(|state| match state.identities.contains_key(&ip) {
            true => Ok((vec![Record::IdentDel { ip }], true)),
            false => Ok((Vec::new(), false)),
        })
        .await
    }

    async fn familiar_since(
        &self,
        account: &str,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<Option<UnixTime>, StoreError> {
        let source = Source::of(ip);
        Ok(self.read(|state| {
            let seen = *state.familiar.get(account)?.get(&source)?;
            (seen.saturating_add(FAMILIAR_SOURCE_SECS) > now).then_some(seen)
        }))
    }

    async fn note_familiar(
        &self,
        account: &str,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let record = Record::Familiar {
            account: account.to_owned(),
            source: Source::of(ip).address(),
            seen: now,
        };
        self.write(|_| Ok((vec![record], ()))).await
    }

    async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.read(|state| {
            let name = state.resolve(name)?;
            state.users.get(name).map(|user| UserRecord {
                name: name.to_owned(),
                password_hash: user.hash.clone(),
                created: user.created,
            })
        }))
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut users = self.read(|state| {
            state
                .users
                .iter()
                .map(|(name, user)| UserRecord {
                    name: name.clone(),
                    password_hash: user.hash.clone(),
                    created: user.created,
                })
                .collect::<Vec<_>>()
        });
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }

    async fn create_user(&self, user: UserRecord) -> Result<(), StoreError> {
        self.write(|state| {
            if state.name_taken(&user.name) {
                return Err(StoreError::NameTaken(user.name.clone()));
            }
            let record = Record::User {
                name: user.name,
                hash: user.password_hash,
                created: user.created,
            };
            Ok((vec![record], ()))
        })
        .await
    }

    async fn register(
        &self,
        user: UserRecord,
        token: TokenHash,
    ) -> Result<SessionInfo, StoreError> {
        let lifetimes = self.inner.lifetimes;
        self.write(|state| {
            if state.name_taken(&user.name) {
                return Err(StoreError::NameTaken(user.name.clone()));
            }
            let id = Uuid::new_v4();
            let now = user.created;
            let info = SessionInfo {
                chain: id,
                user: user.name.clone(),
                created: now,
                last_used: now,
                expires: lifetimes.expires(now, now),
            };
            let records = vec![
                Record::User {
                    name: user.name.clone(),
                    hash: user.password_hash,
                    created: now,
                },
                Record::Session {
                    chain: id,
                    user: user.name,
                    token: token.to_hex(),
                    created: now,
                    used: now,
                    rotated: Vec::new(),
                },
            ];
            Ok((records, info))
        })
        .await
    }

    async fn set_password(&self, name: &str, password_hash: String) -> Result<(), StoreError> {
        self.write(|state| {
            let no_such_user = || StoreError::NoSuchUser(name.to_owned());
            let name = state.resolve(name).ok_or_else(no_such_user)?;
            let user = state.users.get(name).ok_or_else(no_such_user)?;
            let records = vec![
                Record::User {
                    name: name.to_owned(),
                    hash: password_hash,
                    created: user.created,
                },
                Record::RevokeUser {
                    name: name.to_owned(),
                },
            ];
            Ok((records, ()))
        })
        .await
    }

    async fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        self.write(|state| {
            let name = state
                .resolve(name)
                .ok_or_else(|| StoreError::NoSuchUser(name.to_owned()))?;
            Ok((
                vec![Record::UserDel {
                    name: name.to_owned(),
                }],
                (),
            ))
        })
        .await
    }

    async fn create_session(
        &self,
        token: TokenHash,
        user: &str,
        now: UnixTime,
    ) -> Result<SessionInfo, StoreError> {
        let lifetimes = self.inner.lifetimes;
        self.write(|state| {
            let user = state
                .resolve(user)
                .ok_or_else(|| StoreError::NoSuchUser(user.to_owned()))?;
            let id = Uuid::new_v4();
            let record = Record::Session {
                chain: id,
                user: user.to_owned(),
                token: token.to_hex(),
                created: now,
                used: now,
                rotated: Vec::new(),
            };
            let info = SessionInfo {
                chain: id,
                user: user.to_owned(),
                created: now,
                last_used: now,
                expires: lifetimes.expires(now, now),
            };
            Ok((vec![record], info))
        })
        .await
    }

    async fn rotate_session(
        &self,
        presented: TokenHash,
        next: TokenHash,
        now: UnixTime,
    ) -> Result<Rotation, StoreError> {
        let lifetimes = self.inner.lifetimes;
        self.write(|state| {
            let Some(chain) = state
                .tokens
                .get(&presented)
                .and_then(|id| state.chains.get_key_value(id))
            else {
                return Ok((Vec::new(), Rotation::Unknown));
            };
            let (id, chain) = (*chain.0, chain.1);
            if !chain.current.ct_eq(&presented) {
                let outcome = Rotation::Reused {
                    user: chain.user.clone(),
                    chain: id,
                };
                return Ok((vec![Record::Revoke { chain: id }], outcome));
            }
            let worn_out = chain.rotated.len() >= MAX_ROTATIONS_PER_CHAIN;
            if worn_out || lifetimes.expires(chain.created, chain.last_used) <= now {
                let outcome = Rotation::Expired {
                    user: chain.user.clone(),
                    chain: id,
                };
                return Ok((vec![Record::Revoke { chain: id }], outcome));
            }
            let record = Record::Session {
                chain: id,
                user: chain.user.clone(),
                token: next.to_hex(),
                created: chain.created,
                used: now,
                rotated: Vec::new(),
            };
            let mut info = session_info(id, chain, lifetimes);
            info.last_used = now;
            info.expires = lifetimes.expires(chain.created, now);
            Ok((vec![record], Rotation::Rotated(info)))
        })
        .await
    }

    /// The cause is for a store others share: nobody else hears this one.
    async fn revoke_session(&self, id: Uuid, _cause: EndCause) -> Result<bool, StoreError> {
        self.write(|state| {
            if state.chains.contains_key(&id) {
                Ok((vec![Record::Revoke { chain: id }], true))
            } else {
                Ok((Vec::new(), false))
            }
        })
        .await
    }

    async fn revoke_user_sessions(&self, user: &str) -> Result<usize, StoreError> {
        self.write(|state| {
            let user = state.resolve(user).unwrap_or(user);
            let count = state.chains.values().filter(|c| c.user == user).count();
            let records = if count > 0 {
                vec![Record::RevokeUser {
                    name: user.to_owned(),
                }]
            } else {
                Vec::new()
            };
            Ok((records, count))
        })
        .await
    }

    async fn sessions(&self, user: &str, now: UnixTime) -> Result<Vec<SessionInfo>, StoreError> {
        let lifetimes = self.inner.lifetimes;
        let mut sessions = self.read(|state| {
            let user = state.resolve(user).unwrap_or(user);
            state
                .chains
                .iter()
                .filter(|(_, chain)| chain.user == user)
                .map(|(id, chain)| session_info(*id, chain, lifetimes))
                .filter(|info| info.expires > now)
                .collect::<Vec<_>>()
        });
        sessions.sort_by_key(|info| info.created);
        Ok(sessions)
    }

    async fn chains_alive(&self, chains: Vec<Uuid>) -> Result<Vec<Uuid>, StoreError> {
        Ok(self.read(|state| {
            chains
                .into_iter()
                .filter(|id| state.chains.contains_key(id))
                .collect()
        }))
    }
}
