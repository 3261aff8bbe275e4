//! `echo-server user …` and `echo-server session …`: operating on the store
//! of a server that is not running (the store's lock refuses otherwise).

use std::{fmt::Write as _, net::IpAddr};

use echo_proto::Secret;
use uuid::Uuid;

use crate::{
    auth::{Passwords, check_password, validate_name},
    ops::logging::shown_max,
    store::{EndCause, StoreError, UnixTime, UserRecord, UserStore},
    sys::clock::format_time,
};

/// An admin command that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The name or password breaks a rule.
    #[error("{0}")]
    Refused(String),
}

/// Adds a user after checking the name and the password rules.
pub async fn add_user<S: UserStore>(
    store: &S,
    name: &str,
    password: Secret,
    min_password_length: usize,
    now: UnixTime,
) -> Result<String, AdminError> {
    let name = validate_name(name).map_err(AdminError::Refused)?;
    check_password(&name, password.expose(), min_password_length).map_err(AdminError::Refused)?;
    if store.user(&name).await?.is_some() {
        return Err(StoreError::NameTaken(name).into());
    }
    let password_hash = hash(password).await?;
    store
        .create_user(UserRecord {
            name: name.clone(),
            password_hash,
            created: now,
        })
        .await?;
    Ok(format!("user {name} added"))
}

/// Sets a new password and revokes the user's sessions.
pub async fn set_password<S: UserStore>(
    store: &S,
    name: &str,
    password: Secret,
    min_password_length: usize,
) -> Result<String, AdminError> {
    if store.user(name).await?.is_none() {
        return Err(StoreError::NoSuchUser(name.to_owned()).into());
    }
    check_password(name, password.expose(), min_password_length).map_err(AdminError::Refused)?;
    let password_hash = hash(password).await?;
    store.set_password(name, password_hash).await?;
    Ok(format!(
        "password of {name} changed; their sessions are revoked"
    ))
}

/// One line per user: name and creation date.
pub async fn list_users<S: UserStore>(store: &S) -> Result<String, AdminError> {
    let users = store.users().await?;
    if users.is_empty() {
        // An empty answer would look like a command that did nothing.
        return Ok("no users\n".to_owned());
    }
    let mut out = String::new();
    for user in users {
        // Names from before names were checked may hold characters that
        // would disguise the listing: shown escaped.
        let name = shown_max(&user.name, usize::MAX);
        let _ = writeln!(out, "{name}\tcreated {}", format_time(user.created));
    }
    Ok(out)
}

/// Removes a user and their sessions.
pub async fn remove_user<S: UserStore>(store: &S, name: &str) -> Result<String, AdminError> {
    store.remove_user(name).await?;
    Ok(format!("user {name} removed"))
}

/// One line per live session of `user`, its id first (see [`session_ids`]).
pub async fn list_sessions<S: UserStore>(
    store: &S,
    user: &str,
    now: UnixTime,
) -> Result<String, AdminError> {
    if store.user(user).await?.is_none() {
        return Err(StoreError::NoSuchUser(user.to_owned()).into());
    }
    let sessions = store.sessions(user, now).await?;
    if sessions.is_empty() {
        return Ok(format!("{} has no live sessions\n", shown_max(user, 64)));
    }
    let chains: Vec<Uuid> = sessions.iter().map(|session| session.chain).collect();
    let mut out = String::new();
    for (session, id) in sessions.iter().zip(session_ids(&chains)) {
        let _ = writeln!(
            out,
            "{id}\tstarted {}\tlast used {}\texpires {}",
            format_time(session.created),
            format_time(session.last_used),
            format_time(session.expires)
        );
    }
    Ok(out)
}

/// The ids `session list` shows: the first 8 hex digits of each chain's id
/// (like a connection's), or all 32 when two would look the same. The
/// chain's id is no secret: resuming needs the token, which the store never
/// keeps.
fn session_ids(chains: &[Uuid]) -> Vec<String> {
    let full: Vec<String> = chains.iter().map(|c| c.simple().to_string()).collect();
    let short = |id: &String| id[..SHORT_ID].to_owned();
    let mut prefixes: Vec<String> = full.iter().map(short).collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    match prefixes.len() == full.len() {
        true => full.iter().map(short).collect(),
        false => full,
    }
}

/// Hex digits of a session id as `session list` shows it.
const SHORT_ID: usize = 8;

/// Revokes every session of `user`.
pub async fn revoke_sessions<S: UserStore>(store: &S, user: &str) -> Result<String, AdminError> {
    if store.user(user).await?.is_none() {
        return Err(StoreError::NoSuchUser(user.to_owned()).into());
    }
    let count = store.revoke_user_sessions(user).await?;
    Ok(format!("{count} session(s) of {user} revoked"))
}

/// Revokes the session of `user` whose id (as `session list` shows it, or
/// longer) is `id`; returns the chain, to end its live connections, and
/// what to print.
pub async fn revoke_session<S: UserStore>(
    store: &S,
    user: &str,
    id: &str,
    now: UnixTime,
) -> Result<(Uuid, String), AdminError> {
    let wanted = id.to_ascii_lowercase().replace('-', "");
    if wanted.len() < SHORT_ID || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(AdminError::Refused(format!(
            "\"{}\" is not a session id: give the {SHORT_ID} or more hex digits session list shows",
            shown_max(id, 64)
        )));
    }
    if store.user(user).await?.is_none() {
        return Err(StoreError::NoSuchUser(user.to_owned()).into());
    }
    let matching: Vec<Uuid> = store
        .sessions(user, now)
        .await?
        .into_iter()
        .map(|session| session.chain)
        .filter(|chain| chain.simple().to_string().starts_with(&wanted))
        .collect();
    let chain = match matching[..] {
        [chain] => chain,
        [] => {
            return Err(AdminError::Refused(format!(
                "{user} has no session {wanted}"
            )));
        }
        _ => {
            return Err(AdminError::Refused(format!(
                "{wanted} is the start of several sessions of {user}: give more of the id"
            )));
        }
    };
    if !store.revoke_session(chain, EndCause::Operator).await? {
        return Err(AdminError::Refused(format!(
            "{user} has no session {wanted}"
        )));
    }
    Ok((chain, format!("session {wanted} of {user} revoked")))
}

/// One line per address with a known name (identification mode; in auth
/// mode, the user offered to it): the address, the name, when last seen.
pub async fn list_identities<S: UserStore>(store: &S, now: UnixTime) -> Result<String, AdminError> {
    let known = store.identities(now).await?;
    if known.is_empty() {
        return Ok("no names known by address\n".to_owned());
    }
    let mut out = String::new();
    for (ip, identity) in known {
        let name = shown_max(&identity.name, usize::MAX);
        let _ = writeln!(
            out,
            "{ip}\t{name}\tlast seen {}",
            format_time(identity.seen)
        );
    }
    Ok(out)
}

/// Forgets the name known for `address`: its next visit is greeted as new.
pub async fn forget_identity<S: UserStore>(store: &S, address: &str) -> Result<String, AdminError> {
    let ip: IpAddr = address.trim().parse().map_err(|_| {
        AdminError::Refused(format!(
            "\"{}\" is not an IP address (like 192.0.2.7 or 2001:db8::7)",
            shown_max(address, 64)
        ))
    })?;
    // An IPv4 client of a dual-stack listener is kept as ::ffff:a.b.c.d:
    // either spelling forgets it.
    let mapped = match ip {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    };
    for form in [ip, ip.to_canonical(), mapped] {
        if store.forget_identity(form).await? {
            return Ok(format!("{ip} forgotten: its next visit is greeted as new"));
        }
    }
    Err(AdminError::Refused(format!("no name is known for {ip}")))
}

async fn hash(password: Secret) -> Result<String, AdminError> {
    let passwords = tokio::task::spawn_blocking(Passwords::new)
        .await
        .map_err(|err| AdminError::Refused(err.to_string()))?
        .map_err(|err| AdminError::Refused(err.to_string()))?;
    passwords
        .hash(password)
        .await
        .map_err(|err| AdminError::Refused(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_user_list_shows_disguising_characters_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::store::sqlite::DB_FILE);
        let store = crate::store::SqliteStore::open(&path, Default::default())
            .await
            .unwrap();
        let user = |name: &str| UserRecord {
            name: name.into(),
            password_hash: "h".into(),
            created: 0,
        };
        // As an older store may hold it: the store itself checks no names.
        store.create_user(user("evil\u{202e}nimda")).await.unwrap();
        let listed = list_users(&store).await.unwrap();
        assert!(
            listed.starts_with("evil\\u{202e}nimda\tcreated"),
            "{listed}"
        );
        assert!(!listed.contains('\u{202e}'));
    }

    #[test]
    fn formats_unix_time_as_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_time(1_795_000_000), "2026-11-18 11:06:40 UTC");
    }
}
