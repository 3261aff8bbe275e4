//! Whether a failover could lose a change a client was told about: the
//! primary's `synchronous_commit` (as the store's sessions get it) and
//! `synchronous_standby_names`, and its standbys (`pg_stat_replication`).
//! A commit is answered only once a synchronous standby has it when
//! `synchronous_commit` is `on`, `remote_write` or `remote_apply` and a
//! standby is synchronous now; otherwise a standby promoted after the
//! primary dies may lack the last acknowledged changes. Shown by
//! `db status`, and logged each time a server's listener finds the primary
//! (at start, and after a failover).

use std::fmt::Write as _;

use tokio_postgres::Client;

use super::{
    PgUrl,
    connect::{CONNECT_TIMEOUT, connect},
    db_error,
};
use crate::store::StoreError;

/// The primary's replication, as seen from one of the store's sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// `synchronous_commit` for this session (the server's, or a role's
    /// or database's setting).
    pub synchronous_commit: String,
    /// `synchronous_standby_names`; empty: no standby is waited for.
    pub standby_names: String,
    /// The standbys streaming now.
    pub standbys: Vec<Standby>,
}

/// One standby in `pg_stat_replication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standby {
    /// Its `application_name` (what `synchronous_standby_names` lists).
    pub name: String,
    /// `streaming`, `catchup`, ...; `?` where the role may not see it.
    pub state: String,
    /// `sync`, `quorum`, `potential`, `async`; `?` where the role may not
    /// see it (it needs `pg_monitor` or a superuser).
    pub sync_state: String,
}

impl Replication {
    /// Reads it on `client`'s host.
    pub(super) async fn read(client: &Client) -> Result<Self, StoreError> {
        let settings = client
            .query_one(
                "SELECT current_setting('synchronous_commit'), \
                 current_setting('synchronous_standby_names')",
                &[],
            )
            .await
            .map_err(db_error)?;
        let rows = client
            .query(
                "SELECT coalesce(application_name, '?'), coalesce(state, '?'), \
                 coalesce(sync_state, '?') FROM pg_stat_replication ORDER BY 1",
                &[],
            )
            .await
            .map_err(db_error)?;
        let standbys = rows
            .iter()
            .map(|row| Standby {
                name: row.get(0),
                state: row.get(1),
                sync_state: row.get(2),
            })
            .collect();
        Ok(Self {
            synchronous_commit: settings.get(0),
            standby_names: settings.get(1),
            standbys,
        })
    }

    /// Whether every answered commit is on a standby too, now.
    pub fn survives_failover(&self) -> bool {
        let waits = matches!(
            self.synchronous_commit.as_str(),
            "on" | "remote_write" | "remote_apply"
        );
        let synchronous = self
            .standbys
            .iter()
            .any(|s| matches!(s.sync_state.as_str(), "sync" | "quorum"));
        waits && !self.standby_names.trim().is_empty() && synchronous
    }

    /// Why a failover now could lose acknowledged changes, if it could.
    pub fn risk(&self) -> Option<String> {
        if self.survives_failover() {
            return None;
        }
        Some(if self.standbys.is_empty() {
            "no standby streams from this database: if it is lost, so is everything since the last backup".into()
        } else if !matches!(
            self.synchronous_commit.as_str(),
            "on" | "remote_write" | "remote_apply"
        ) {
            format!(
                "synchronous_commit = {}: commits are answered before a standby has them, and a failover may lose the last acknowledged changes",
                self.synchronous_commit
            )
        } else if self.standby_names.trim().is_empty() {
            "synchronous_standby_names is empty: replication is asynchronous, and a failover may lose the last acknowledged changes".into()
        } else {
            "no standby is synchronous now (none connected, or the role cannot see pg_stat_replication): a failover may lose acknowledged changes".into()
        })
    }

    /// Lines for `db status`.
    pub fn report(&self) -> String {
        let mut out = format!(
            "replication: synchronous_commit = {}, synchronous_standby_names = '{}'\n",
            self.synchronous_commit, self.standby_names
        );
        for standby in &self.standbys {
            let _ = writeln!(
                out,
                "standby {}: {}, {}",
                standby.name, standby.state, standby.sync_state
            );
        }
        match self.risk() {
            None => {
                out.push_str("failover: every acknowledged change is on a synchronous standby\n")
            }
            Some(risk) => {
                let _ = writeln!(out, "failover: {risk}");
            }
        }
        out
    }
}

/// The replication of the primary `url` leads to (`db status`).
pub async fn status(url: &PgUrl) -> Result<Replication, StoreError> {
    let (client, _notes) = connect(url, CONNECT_TIMEOUT, None).await?;
    Replication::read(&client).await
}

/// Logs what a failover now could lose as a warning, or an info line that
/// it could lose nothing; a debug line when it cannot be read.
pub(super) async fn warn_if_at_risk(client: &Client) {
    match Replication::read(client).await {
        Ok(replication) => match replication.risk() {
            Some(risk) => tracing::warn!(%risk, "the database's replication"),
            None => tracing::info!(
                "the database has a synchronous standby: a failover loses no acknowledged change"
            ),
        },
        Err(err) => tracing::debug!(error = %err, "cannot read the database's replication"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(commit: &str, names: &str, sync_states: &[&str]) -> Replication {
        Replication {
            synchronous_commit: commit.into(),
            standby_names: names.into(),
            standbys: sync_states
                .iter()
                .map(|state| Standby {
                    name: "s".into(),
                    state: "streaming".into(),
                    sync_state: (*state).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn only_a_waited_for_synchronous_standby_survives_a_failover() {
        assert!(with("on", "*", &["sync"]).survives_failover());
        assert!(with("remote_apply", "ANY 1 (a, b)", &["quorum", "quorum"]).survives_failover());
        assert!(with("remote_write", "s", &["sync", "async"]).survives_failover());
        for (case, risky) in [
            ("no standby", with("on", "", &[])),
            ("asynchronous", with("on", "", &["async"])),
            ("local", with("local", "*", &["sync"])),
            ("off", with("off", "*", &["sync"])),
            ("not connected", with("on", "*", &["potential"])),
            ("hidden", with("on", "*", &["?"])),
        ] {
            assert!(!risky.survives_failover(), "{case}");
            assert!(risky.risk().is_some(), "{case}");
            assert!(risky.report().contains("failover: "), "{case}");
        }
    }
}
