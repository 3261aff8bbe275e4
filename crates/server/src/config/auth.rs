//! Passwords, sessions and attempts: [`Auth`].

use super::{ConfigError, FileConfig, at_least_1};
use crate::{
    auth::{Passwords, passwords::MIN_PASSWORD_CHARS},
    store::Lifetimes,
};

/// Seconds in a day, for the lifetimes given in days.
const DAY_SECS: u64 = 86_400;

/// How users authenticate, and how long what they get lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// Days a session token stays valid without use.
    pub session_idle_days: u64,
    /// Days a session chain stays valid after its login, however used.
    pub session_max_days: u64,
    /// Days an address's name is kept after it was last seen.
    pub identity_days: u64,
    /// Shortest password `register` accepts (never under 8).
    pub min_password_length: usize,
    /// Password attempts (`login`, `register`) one source (an IPv4 address,
    /// an IPv6 /64) may make a minute (`auth_attempts_per_minute`).
    pub attempts_per_minute: u32,
    /// Whether `ask_auth` names the user last logged in from the address.
    pub suggest_user: bool,
    /// Password jobs (hashing, verifying, strength checks) run at once.
    pub password_workers: usize,
    /// Whether passwords and tokens may cross a plain port from outside
    /// the loopback range (off: `tls_required`).
    pub allow_plaintext_auth: bool,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            session_idle_days: 7,
            session_max_days: 30,
            identity_days: 365,
            min_password_length: 8,
            attempts_per_minute: 30,
            suggest_user: true,
            password_workers: Passwords::default_workers(),
            allow_plaintext_auth: false,
        }
    }
}

impl Auth {
    /// From the file (no flags), else the defaults; each in its range.
    pub(super) fn resolve(file: &FileConfig) -> Result<Self, ConfigError> {
        let d = Self::default();
        let days = |name, key: Option<u64>, default| at_least_1(name, key.unwrap_or(default));
        let min_password_length = file.min_password_length.unwrap_or(d.min_password_length);
        if min_password_length < MIN_PASSWORD_CHARS {
            return Err(ConfigError::Invalid(format!(
                "min_password_length must be at least {MIN_PASSWORD_CHARS}"
            )));
        }
        Ok(Self {
            session_idle_days: days(
                "session_idle_days",
                file.session_idle_days,
                d.session_idle_days,
            )?,
            session_max_days: days(
                "session_max_days",
                file.session_max_days,
                d.session_max_days,
            )?,
            identity_days: days("identity_days", file.identity_days, d.identity_days)?,
            min_password_length,
            attempts_per_minute: at_least_1(
                "auth_attempts_per_minute",
                file.auth_attempts_per_minute
                    .unwrap_or(d.attempts_per_minute),
            )?,
            suggest_user: file.suggest_user.unwrap_or(d.suggest_user),
            password_workers: at_least_1(
                "password_workers",
                file.password_workers.unwrap_or(d.password_workers),
            )?,
            allow_plaintext_auth: file.allow_plaintext_auth.unwrap_or(d.allow_plaintext_auth),
        })
    }

    /// Session lifetimes in seconds, for the store.
    pub fn lifetimes(&self) -> Lifetimes {
        Lifetimes {
            idle: self.session_idle_days.saturating_mul(DAY_SECS),
            absolute: self.session_max_days.saturating_mul(DAY_SECS),
            identity: self.identity_days.saturating_mul(DAY_SECS),
        }
    }
}
