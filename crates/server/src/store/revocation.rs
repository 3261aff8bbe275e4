//! Why a session chain ended, and how the end of a chain is heard from a
//! store that several servers share.

use uuid::Uuid;

/// Why a session chain ended before its connections did: carried from
/// where it ends (this server, another one, an admin command) to every
/// live connection it authenticated, whose `bye {reason: "revoked"}` says
/// it as `cause`. The names are the wire's, and the database's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndCause {
    /// The session logged out on one of its connections.
    Logout,
    /// A rotated-away token of the chain was presented again.
    Reuse,
    /// An operator revoked the session or removed the user.
    Operator,
    /// The user's password was changed.
    PasswordChanged,
    /// The chain reached the end of its lifetime (found at a `resume`).
    Expired,
}

impl EndCause {
    /// Every cause.
    pub const ALL: [EndCause; 5] = [
        EndCause::Logout,
        EndCause::Reuse,
        EndCause::Operator,
        EndCause::PasswordChanged,
        EndCause::Expired,
    ];

    /// The cause's name on the wire and in the database's notifications.
    pub fn as_str(self) -> &'static str {
        match self {
            EndCause::Logout => "logout",
            EndCause::Reuse => "reuse",
            EndCause::Operator => "operator",
            EndCause::PasswordChanged => "password_changed",
            EndCause::Expired => "expired",
        }
    }

    /// The cause named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|cause| cause.as_str() == name)
    }
}

/// A session chain ended somewhere else (another server, an admin command),
/// heard from a shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// This chain has ended, for this cause when one was said: its live
    /// connections must end.
    Chain(Uuid, Option<EndCause>),
    /// Revocations may have been missed (the channel was lost): check every
    /// live chain with [`super::UserStore::chains_alive`].
    Resync,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_parses_back_from_its_name() {
        for cause in EndCause::ALL {
            assert_eq!(EndCause::parse(cause.as_str()), Some(cause));
        }
        assert_eq!(EndCause::parse(""), None);
        assert_eq!(EndCause::parse("Logout"), None);
    }
}
