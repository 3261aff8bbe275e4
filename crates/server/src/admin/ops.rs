//! `echo-server user …` and `echo-server session …`: operating on the store
//! of a server that is not running (the store's lock refuses otherwise).

use std::fmt::Write as _;

use echo_proto::Secret;

use crate::{
    auth::{Passwords, check_password, validate_name},
    ops::logging::shown_max,
    store::{StoreError, UnixTime, UserRecord, UserStore},
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
    let mut out = String::new();
    for user in store.users().await? {
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

/// One line per live session of `user`.
pub async fn list_sessions<S: UserStore>(
    store: &S,
    user: &str,
    now: UnixTime,
) -> Result<String, AdminError> {
    if store.user(user).await?.is_none() {
        return Err(StoreError::NoSuchUser(user.to_owned()).into());
    }
    let mut out = String::new();
    for session in store.sessions(user, now).await? {
        let _ = writeln!(
            out,
            "{}\tstarted {}\tlast used {}\texpires {}",
            session.chain,
            format_time(session.created),
            format_time(session.last_used),
            format_time(session.expires)
        );
    }
    Ok(out)
}

/// Revokes every session of `user`.
pub async fn revoke_sessions<S: UserStore>(store: &S, user: &str) -> Result<String, AdminError> {
    if store.user(user).await?.is_none() {
        return Err(StoreError::NoSuchUser(user.to_owned()).into());
    }
    let count = store.revoke_user_sessions(user).await?;
    Ok(format!("{count} session(s) of {user} revoked"))
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
        let store = crate::store::FileStore::open(dir.path(), Default::default()).unwrap();
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
