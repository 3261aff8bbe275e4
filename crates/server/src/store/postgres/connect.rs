//! Connections to the database outside the pool (migrations, `LISTEN`),
//! and the settings every connection has: a connect timeout and TCP
//! keepalive.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Connection, Notification, tls::NoTls};

use super::{hosts::Hosts, url::PgUrl};
use crate::store::StoreError;

/// Time to connect, and to wait for a free connection from the pool.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle time before TCP keepalive probes start on a database connection;
/// then one every `KEEPALIVE_INTERVAL`, and after `KEEPALIVE_RETRIES`
/// unanswered the kernel closes it: a database host that vanished (power,
/// network) is noticed in about 40 s, not the system's two hours.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 5;

/// The connection settings of `url`, with this store's connect timeout
/// and keepalive.
pub(super) fn tuned(url: &PgUrl) -> tokio_postgres::Config {
    let mut config = url.config().clone();
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES);
    config
}

/// A plain connection to `url` (for migrations and `db status`), each
/// host given `per_host` for its whole handshake: [`connect_via`] over
/// hosts of its own.
pub(super) async fn connect(
    url: &PgUrl,
    per_host: Duration,
    application_name: Option<&str>,
) -> Result<(Client, mpsc::UnboundedReceiver<Notification>), StoreError> {
    connect_via(url, &Hosts::of(&tuned(url)), per_host, application_name).await
}

/// A plain connection to one of `hosts` (`url`'s; for `LISTEN`, named
/// `application_name` in `pg_stat_activity` when given), each host given
/// `per_host` for its whole handshake, not only the TCP connect
/// (`hosts.rs`), driven on its own task; its notifications arrive on the
/// receiver, which closes when the connection is lost. Dropping the
/// receiver closes the connection, even one whose server no longer
/// answers: keep it as long as the client.
pub(super) async fn connect_via(
    url: &PgUrl,
    hosts: &Hosts,
    per_host: Duration,
    application_name: Option<&str>,
) -> Result<(Client, mpsc::UnboundedReceiver<Notification>), StoreError> {
    let unreachable = |err: tokio_postgres::Error| {
        StoreError::Unavailable(format!("cannot connect to {url}: {}", describe(&err)))
    };
    let (sender, receiver) = mpsc::unbounded_channel();
    let client = match url.tls().map_err(StoreError::Database)? {
        Some(tls) => {
            let connecting = hosts.connect(&tls, per_host, application_name);
            let (client, connection) = connecting.await.map_err(unreachable)?;
            tokio::spawn(drive(connection, sender));
            client
        }
        None => {
            let connecting = hosts.connect(&NoTls, per_host, application_name);
            let (client, connection) = connecting.await.map_err(unreachable)?;
            tokio::spawn(drive(connection, sender));
            client
        }
    };
    Ok((client, receiver))
}

/// Drives one connection, passing its notifications on; ends when the
/// connection does, or when nobody holds the receiver any more (which
/// closes a connection whose server stopped answering).
async fn drive<S, T>(mut connection: Connection<S, T>, notes: mpsc::UnboundedSender<Notification>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = tokio::select! {
            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => message,
            () = notes.closed() => return,
        };
        match message {
            Some(Ok(AsyncMessage::Notification(note))) => {
                let _ = notes.send(note);
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => {
                tracing::debug!(error = %err, "database connection ended");
                return;
            }
            None => return,
        }
    }
}

/// A database error's own words (tokio-postgres's `Display` says only "db error").
pub(super) fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => err.to_string(),
    }
}
