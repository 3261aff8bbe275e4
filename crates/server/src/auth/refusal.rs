//! [`Refusal`]: what the authenticator says no with, in its own terms: a
//! [`Reason`], a sentence for people and whether it costs an attempt. The
//! session (`conn/session/`) turns the reason into the wire's error code.

use tracing::error;

use crate::{
    ops::metrics::AuthFailure,
    store::{StoreError, ledger::Limited},
};

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub reason: Reason,
    /// A sentence for people.
    pub message: String,
    /// Whether it uses up one of the connection's attempts: only a refusal
    /// that checked a secret (a password, a token) or a rate limit does.
    pub counts: bool,
}

/// Why the authenticator refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A name that is empty, too long, unprintable or unstorable.
    InvalidName,
    /// `register` with a name that exists.
    NameTaken,
    /// `register` with a password too short, too long or too common.
    WeakPassword,
    /// An unknown user or a wrong password (deliberately the same).
    InvalidCredentials,
    /// A session token that is unknown, expired or revoked.
    TokenInvalid,
    /// Too many attempts from the source or on the account.
    RateLimited,
    /// The server failed; nothing was changed.
    Internal,
    /// The store cannot be reached just now.
    Unavailable,
}

impl Reason {
    /// The `echo_auth_failures_total` label of a refusal for this reason.
    pub fn failure(self) -> AuthFailure {
        match self {
            Reason::InvalidName => AuthFailure::invalid_name,
            Reason::NameTaken => AuthFailure::name_taken,
            Reason::WeakPassword => AuthFailure::weak_password,
            Reason::InvalidCredentials => AuthFailure::invalid_credentials,
            Reason::TokenInvalid => AuthFailure::token_invalid,
            Reason::RateLimited => AuthFailure::rate_limited,
            Reason::Internal => AuthFailure::internal,
            Reason::Unavailable => AuthFailure::unavailable,
        }
    }
}

pub(super) fn refused_by_store(err: StoreError) -> Refusal {
    if let StoreError::Unavailable(why) = &err {
        // The store warns once per outage; not once per request.
        tracing::debug!(error = %why, "store unavailable");
        return unavailable();
    }
    if let StoreError::InvalidText(why) = &err {
        // A name the database cannot hold (lookups of one find nothing,
        // so only a write gets here): the client's fault, not the server's.
        tracing::info!(error = %why, "refused: text the store cannot hold");
        return unstorable_name();
    }
    error!(error = %err, "store failure");
    internal()
}

/// A name the store cannot hold (PostgreSQL: a NUL character): no password
/// was checked, so it costs no attempt.
pub(crate) fn unstorable_name() -> Refusal {
    Refusal {
        reason: Reason::InvalidName,
        message: "the name has characters the server cannot store".into(),
        counts: false,
    }
}

/// What a client is told when the step it is on needs a store that cannot
/// be reached; the session ends it as fatal.
pub fn unavailable() -> Refusal {
    Refusal {
        reason: Reason::Unavailable,
        message: "the server cannot reach its database just now; nothing was changed, try again in a few seconds".into(),
        counts: false,
    }
}

pub(super) fn internal() -> Refusal {
    Refusal {
        reason: Reason::Internal,
        message: "the server failed; nothing was changed, try again".into(),
        counts: false,
    }
}

/// `register` with a name that exists: no password was checked, so it
/// costs no attempt.
pub(super) fn name_taken(name: &str) -> Refusal {
    Refusal {
        reason: Reason::NameTaken,
        message: format!("the user name {name:?} is taken"),
        counts: false,
    }
}

pub(super) fn token_invalid() -> Refusal {
    Refusal {
        reason: Reason::TokenInvalid,
        message: "the session token is unknown, expired or revoked; log in with your password"
            .into(),
        counts: true,
    }
}

pub(super) fn rate_limited(limit: Limited) -> Refusal {
    Refusal {
        reason: Reason::RateLimited,
        message: format!("too many attempts; try again in {} s", limit.retry_after),
        counts: true,
    }
}
