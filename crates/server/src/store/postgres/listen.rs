//! Revocations from every server: a dedicated connection `LISTEN`s on
//! `echo_revoked`, where the `sessions_ended` trigger announces each chain
//! that ends. After that connection is lost it is made again (with
//! back-off), and the server is told to re-check its live sessions: what
//! ended in the gap was not heard.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, watch};
use tokio_postgres::{AsyncMessage, Connection, Notification};
use tracing::info;
use uuid::Uuid;

use super::{FIRST_RETRY, MAX_RETRY, Outage, PgUrl, connect};
use crate::store::Revocation;

/// The channel the trigger notifies.
pub(super) const CHANNEL: &str = "echo_revoked";

/// Drives one connection, passing its notifications on; ends when the
/// connection does.
pub(super) async fn drive<S, T>(
    mut connection: Connection<S, T>,
    notes: mpsc::UnboundedSender<Notification>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
        match message {
            Ok(AsyncMessage::Notification(note)) => {
                let _ = notes.send(note);
            }
            Ok(_) => {}
            Err(err) => {
                tracing::debug!(error = %err, "database connection ended");
                return;
            }
        }
    }
}

/// Listens, reconnecting when the connection is lost.
///
/// This connection also watches the database for the whole store: losing
/// it marks the store down (one warning per outage), and making it again
/// marks it up, so a server with no traffic (taken out of a balancer by its
/// health check) still finds the database back.
pub(super) async fn run(
    url: PgUrl,
    sender: broadcast::Sender<Revocation>,
    outage: Arc<Outage>,
    listening: watch::Sender<bool>,
) {
    let mut wait = FIRST_RETRY;
    let mut lost = false;
    // For the life of the runtime: a store that started listening keeps
    // listening, whether or not anyone has subscribed yet.
    loop {
        match listen(&url).await {
            Ok((client, mut notes)) => {
                outage.up();
                listening.send_replace(true);
                if lost {
                    info!("revocation channel to the database is back; re-checking live sessions");
                    let _ = sender.send(Revocation::Resync);
                }
                wait = FIRST_RETRY;
                while let Some(note) = notes.recv().await {
                    if let Ok(family) = Uuid::parse_str(note.payload()) {
                        let _ = sender.send(Revocation::Chain(family));
                    }
                }
                drop(client);
                listening.send_replace(false);
                outage.down("lost the connection that listens for revocations");
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

async fn listen(
    url: &PgUrl,
) -> Result<
    (
        tokio_postgres::Client,
        mpsc::UnboundedReceiver<Notification>,
    ),
    crate::store::StoreError,
> {
    let (client, notes) = connect(url).await?;
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(super::db_error)?;
    Ok((client, notes))
}
