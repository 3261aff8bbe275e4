//! Revocations from every server: a dedicated connection `LISTEN`s on
//! `echo_ended`, where the `sessions_ended` trigger announces each chain
//! that ends, with why (`CHAIN CAUSE`, see [`parse`]). After that connection is lost it is made again (with
//! back-off), and the server is told to re-check its live sessions: what
//! ended in the gap was not heard. The connection is checked every
//! [`CHECK_EVERY`]: one that does not answer within the store's timeout, or
//! whose host has become read-only (no longer the primary, whose writes
//! are the ones notified), is replaced the same way, on whichever host is
//! the primary then.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{broadcast, mpsc, watch},
    time::{Instant, MissedTickBehavior},
};
use tokio_postgres::{Client, Notification, SimpleQueryMessage};
use tracing::{info, warn};
use uuid::Uuid;

use super::{
    PgUrl,
    connect::{connect_via, describe},
    hosts::Hosts,
    outage::{FIRST_RETRY, MAX_RETRY, Outage},
    replication::warn_if_at_risk,
};
use crate::store::{EndCause, Revocation, StoreError};

/// The channel the trigger notifies with a chain and its cause (schema
/// version 4; `echo_revoked`, the bare chain, is for older servers).
pub(super) const CHANNEL: &str = "echo_ended";

/// How often the listening connection is checked: a query that must be
/// answered within the store's timeout. A connection that is silently
/// dead (its server process stopped, a firewall dropping packets) hears
/// nothing and reports nothing; this is how it is found out.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Listens, reconnecting when the connection is lost or fails its check.
///
/// Each time it connects, it logs whether a failover of the database it
/// found could lose acknowledged changes (`replication.rs`).
///
/// This connection also watches the database for the whole store: losing
/// it, or its check going unanswered for `timeout`, marks the store down
/// (one warning per outage), and making it again marks it up, so a server
/// with no traffic (taken out of a balancer by its health check) still
/// finds the database gone and back.
pub(super) async fn run(
    url: PgUrl,
    hosts: Hosts,
    timeout: Duration,
    sender: broadcast::Sender<Revocation>,
    outage: Arc<Outage>,
    listening: watch::Sender<bool>,
) {
    let mut wait = FIRST_RETRY;
    let mut lost = false;
    // For the life of the runtime: a store that started listening keeps
    // listening, whether or not anyone has subscribed yet.
    loop {
        match listen(&url, &hosts, timeout).await {
            Ok((client, mut notes)) => {
                outage.up();
                listening.send_replace(true);
                if lost {
                    info!("revocation channel to the database is back; re-checking live sessions");
                    let _ = sender.send(Revocation::Resync);
                }
                // Once per primary found: after a failover, the promoted
                // standby usually has no standby of its own yet.
                let _ = tokio::time::timeout(timeout, warn_if_at_risk(&client)).await;
                wait = FIRST_RETRY;
                let why = hear(&client, &mut notes, &sender, timeout).await;
                // Closes the connection, even one whose server hung.
                drop((client, notes));
                listening.send_replace(false);
                warn!(reason = %why, "revocations are not heard until the listening connection is made again");
                outage.down(&why);
                lost = true;
            }
            Err(err) => {
                outage.down(&err.to_string());
                lost = true;
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_RETRY);
    }
}

/// Passes revocations on until the connection is lost or does not answer
/// its check within `timeout`; says which.
async fn hear(
    client: &Client,
    notes: &mut mpsc::UnboundedReceiver<Notification>,
    sender: &broadcast::Sender<Revocation>,
    timeout: Duration,
) -> String {
    let mut check = tokio::time::interval_at(Instant::now() + CHECK_EVERY, CHECK_EVERY);
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            note = notes.recv() => match note {
                Some(note) => {
                    if let Some(revocation) = parse(note.payload()) {
                        let _ = sender.send(revocation);
                    }
                }
                None => return "lost the connection that listens for revocations".into(),
            },
            _ = check.tick() => {
                let asked = client.simple_query("SHOW transaction_read_only");
                match tokio::time::timeout(timeout, asked).await {
                    Ok(Ok(answer)) if read_only(&answer) => {
                        return "the database the revocations are heard on is read-only now (no longer the primary)".into();
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => {
                        return format!("the connection that listens for revocations failed its check: {}", describe(&err));
                    }
                    Err(_) => {
                        return format!(
                            "the connection that listens for revocations did not answer its check within {} s (store_timeout)",
                            timeout.as_secs_f32()
                        );
                    }
                }
            }
        }
    }
}

/// Whether `SHOW transaction_read_only` said `on`: a demoted primary, or
/// a standby, hears no notification from the primary's writes.
fn read_only(answer: &[SimpleQueryMessage]) -> bool {
    answer.iter().any(|message| match message {
        SimpleQueryMessage::Row(row) => row.get(0) == Some("on"),
        _ => false,
    })
}

/// A notification's payload: the chain id, a space, and the cause's name
/// (empty when the statement that ended the chain named none, as the
/// sweep's or an older server's; an unknown name is no cause either).
fn parse(payload: &str) -> Option<Revocation> {
    let (chain, cause) = payload.split_once(' ').unwrap_or((payload, ""));
    let chain = Uuid::parse_str(chain).ok()?;
    Some(Revocation::Chain(chain, EndCause::parse(cause)))
}

/// How the listening connection shows in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "echo-server revocations";

/// A connection to the primary with `LISTEN` in force. Each host gets the
/// whole `timeout` (nobody waits on this in a request), so the listener
/// finds the new primary past a hung one, and the pool then starts there.
async fn listen(
    url: &PgUrl,
    hosts: &Hosts,
    timeout: Duration,
) -> Result<(Client, mpsc::UnboundedReceiver<Notification>), StoreError> {
    let (client, notes) = connect_via(url, hosts, timeout, Some(APPLICATION_NAME)).await?;
    let deadline = Instant::now() + timeout;
    let sql = format!("LISTEN {CHANNEL}");
    let listening = client.batch_execute(&sql);
    match tokio::time::timeout_at(deadline, listening).await {
        Ok(result) => result.map_err(super::db_error)?,
        Err(_) => {
            return Err(StoreError::Unavailable(format!(
                "LISTEN was not answered within {} s (store_timeout)",
                timeout.as_secs_f32()
            )));
        }
    }
    Ok((client, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_names_the_chain_and_its_cause_if_any() {
        let chain = Uuid::new_v4();
        let with = format!("{chain} password_changed");
        let cause = Some(EndCause::PasswordChanged);
        assert_eq!(parse(&with), Some(Revocation::Chain(chain, cause)));
        for without in [
            format!("{chain} "),
            format!("{chain} nonsense"),
            chain.to_string(),
        ] {
            assert_eq!(parse(&without), Some(Revocation::Chain(chain, None)));
        }
        assert_eq!(parse("not-a-chain logout"), None);
    }
}
