//! Revocations from every server: a dedicated connection `LISTEN`s on
//! `echo_revoked`, where the `sessions_ended` trigger announces each chain
//! that ends. After that connection is lost it is made again (with
//! back-off), and the server is told to re-check its live sessions: what
//! ended in the gap was not heard. The connection is checked every
//! [`CHECK_EVERY`]: one that does not answer within the store's timeout is
//! replaced the same way.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{broadcast, mpsc, watch},
    time::{Instant, MissedTickBehavior},
};
use tokio_postgres::{Client, Notification};
use tracing::{info, warn};
use uuid::Uuid;

use super::{
    PgUrl,
    connect::{connect, describe},
    outage::{FIRST_RETRY, MAX_RETRY, Outage},
};
use crate::store::{Revocation, StoreError};

/// The channel the trigger notifies.
pub(super) const CHANNEL: &str = "echo_revoked";

/// How often the listening connection is checked: a query that must be
/// answered within the store's timeout. A connection that is silently
/// dead (its server process stopped, a firewall dropping packets) hears
/// nothing and reports nothing; this is how it is found out.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Listens, reconnecting when the connection is lost or fails its check.
///
/// This connection also watches the database for the whole store: losing
/// it, or its check going unanswered for `timeout`, marks the store down
/// (one warning per outage), and making it again marks it up, so a server
/// with no traffic (taken out of a balancer by its health check) still
/// finds the database gone and back.
pub(super) async fn run(
    url: PgUrl,
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
        match listen(&url, timeout).await {
            Ok((client, mut notes)) => {
                outage.up();
                listening.send_replace(true);
                if lost {
                    info!("revocation channel to the database is back; re-checking live sessions");
                    let _ = sender.send(Revocation::Resync);
                }
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
                    if let Ok(chain) = Uuid::parse_str(note.payload()) {
                        let _ = sender.send(Revocation::Chain(chain));
                    }
                }
                None => return "lost the connection that listens for revocations".into(),
            },
            _ = check.tick() => {
                match tokio::time::timeout(timeout, client.simple_query("SELECT 1")).await {
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

async fn listen(
    url: &PgUrl,
    timeout: Duration,
) -> Result<(Client, mpsc::UnboundedReceiver<Notification>), StoreError> {
    let deadline = Instant::now() + timeout;
    let (client, notes) = connect(url, timeout).await?;
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
