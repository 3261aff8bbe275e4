//! `bye {reason: "restart"}`: the server is being replaced by a new process
//! on the same port (`echo-server upgrade`). A [`Conversation`] waits as
//! long as the server asked (`retry_after_ms`, bounded, plus a little
//! jitter), connects again to the same address with the same TLS settings,
//! resumes with the saved token (no password), and sends again the lines
//! the old process never read.
//!
//! The rule for lines in flight: the server answers `say`s in order, and
//! before it says `bye restart` it finishes every `say` it has read. So when
//! the `bye` comes, a line whose final reply (or `error`) came is done and
//! is never sent again; a line with no answer at all was not read by the old
//! process, and is sent again, once, on the new connection, in its first
//! order. A line that got part of its replies (a server that broke that
//! promise) was read: it is not sent again, as that could run it twice.

use std::{
    collections::VecDeque,
    hash::{BuildHasher, RandomState},
    time::Duration,
};

use echo_proto::{ByeReason, ErrorCode, ServerMsg};

use crate::{
    ClientError, Connection, Credentials, Established, Incoming, TokenJar, connection::Target,
    handshake,
};

/// Times the client tries to connect again after `bye restart` before it
/// gives up with [`ClientError::Restart`].
pub const RESTART_ATTEMPTS: u32 = 5;

/// The longest wait a server's `retry_after_ms` is honoured for: a server
/// (or a bug) asking for minutes does not freeze the client.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The most jitter added to every wait, so that the hundreds of clients of
/// one server do not all come back in the same millisecond.
pub const MAX_JITTER: Duration = Duration::from_millis(200);

/// The first back-off after a failed attempt; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The longest back-off between two failed attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A connection and the lines sent on it that are not fully answered yet:
/// what a client needs to carry on across `bye restart`.
#[derive(Debug)]
pub struct Conversation {
    conn: Connection,
    in_flight: InFlight,
}

/// Where [`Conversation::restart`] got to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// The handshake on the new connection (`recognised`: by the token).
    pub established: Established,
    /// Connections it took: 1 when the first one was let in.
    pub attempts: u32,
}

/// The lines sent and not fully answered, oldest first.
#[derive(Debug, Default)]
pub struct InFlight {
    lines: VecDeque<Line>,
}

/// One line sent.
#[derive(Debug)]
struct Line {
    id: u64,
    text: String,
    /// Some replies came, not the final one.
    started: bool,
}

impl Conversation {
    /// A conversation on an established connection.
    pub fn new(conn: Connection) -> Self {
        Self {
            conn,
            in_flight: InFlight::default(),
        }
    }

    /// The connection, to send other messages on (`logout`).
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Lines sent and not fully answered.
    pub fn unanswered(&self) -> usize {
        self.in_flight.lines.len()
    }

    /// Sends `text` as a `say` and keeps it until its answer comes.
    ///
    /// A write that fails is no error here: the line stays in flight, and
    /// the connection's end is what [`Conversation::recv`] reads next. A
    /// server that said `bye restart` and closed before this line reached
    /// it is the case in point: the `bye` is read, and the line is sent
    /// again on the new connection; any other end is reported as usual.
    pub async fn say(&mut self, text: String) -> Result<(), ClientError> {
        // No reply can come on a connection a write failed on: an id no
        // reply carries (the client's ids start at 1).
        let id = self.conn.say(text.clone()).await.unwrap_or(0);
        self.in_flight.sent(id, text);
        Ok(())
    }

    /// The next thing from the server, with the answered lines crossed
    /// off. An answer out of order is a protocol error.
    pub async fn recv(&mut self) -> Result<Incoming, ClientError> {
        let incoming = self.conn.recv().await;
        match &incoming {
            Incoming::Msg(ServerMsg::Reply { re, last, .. }) => {
                self.in_flight.replied(*re, *last)?;
            }
            // Answers come in order: an error takes the place of the
            // oldest line's replies.
            Incoming::Msg(ServerMsg::Error { fatal: false, .. }) => self.in_flight.refused(),
            _ => {}
        }
        Ok(incoming)
    }

    /// After `bye restart` (`retry_after_ms` from it): connects again to
    /// the same server, resumes with the token in `jar`, and sends again
    /// the lines the old process did not read (the module's rule). Tries
    /// [`RESTART_ATTEMPTS`] times with a growing back-off; a failure that
    /// another try cannot fix (the server's key changed, a refused
    /// password) ends it at once. After a failure the lines to send again
    /// are still in flight, for another call to send.
    pub async fn restart(
        &mut self,
        retry_after_ms: Option<u64>,
        jar: Option<&TokenJar>,
        creds: &mut impl Credentials,
    ) -> Result<Resumed, ClientError> {
        let again = self.in_flight.take_unread();
        // The old process is waiting for this side to end before it exits.
        self.conn.close().await;
        let target = self.conn.target();
        let (conn, established, attempts) =
            match reconnect(&target, retry_after_ms, jar, creds).await {
                Ok(done) => done,
                Err(err) => {
                    // Still to send, should the caller try again (with
                    // credentials that may ask the user).
                    for text in again {
                        self.in_flight.sent(0, text);
                    }
                    return Err(err);
                }
            };
        self.conn = conn;
        for text in again {
            self.say(text).await?;
        }
        Ok(Resumed {
            established,
            attempts,
        })
    }
}

impl InFlight {
    /// Line `id` was sent.
    fn sent(&mut self, id: u64, text: String) {
        self.lines.push_back(Line {
            id,
            text,
            started: false,
        });
    }

    /// A reply to `re`; the final one crosses the line off.
    fn replied(&mut self, re: u64, last: bool) -> Result<(), ClientError> {
        match self.lines.front_mut() {
            Some(line) if line.id == re && last => {
                self.lines.pop_front();
                Ok(())
            }
            Some(line) if line.id == re => {
                line.started = true;
                Ok(())
            }
            _ => Err(ClientError::Protocol(format!(
                "a reply to {re}, which is not the oldest question"
            ))),
        }
    }

    /// An `error` answered the oldest line.
    fn refused(&mut self) {
        self.lines.pop_front();
    }

    /// The lines to send again on a new connection, oldest first: those
    /// with no answer at all. The list is empty afterwards.
    fn take_unread(&mut self) -> Vec<String> {
        self.lines
            .drain(..)
            .filter(|line| !line.started)
            .map(|line| line.text)
            .collect()
    }
}

/// Connects to `target` and follows the handshake. A `bye restart` during
/// the handshake (a server handing over just as this client came) is met
/// as after it: the client connects again, [`RESTART_ATTEMPTS`] times at
/// most. The token it presented was not answered by a `welcome`, so it is
/// still the one to present.
pub async fn connect(
    target: &Target,
    jar: Option<&TokenJar>,
    creds: &mut impl Credentials,
) -> Result<(Connection, Established), ClientError> {
    let mut conn = target.connect().await?;
    match handshake(&mut conn, jar, creds).await {
        Ok(established) => Ok((conn, established)),
        Err(ClientError::Bye(ByeReason::Restart, _)) => {
            conn.close().await;
            let (conn, established, _) = reconnect(target, None, jar, creds).await?;
            Ok((conn, established))
        }
        Err(err) => Err(err),
    }
}

/// How long to wait before attempt `attempt` (0 the first) to connect
/// again: the server's `retry_after_ms` (at most [`MAX_RETRY_AFTER`]) the
/// first time, then a back-off doubling from 250 ms to 2 s; plus `jitter`
/// (at most [`MAX_JITTER`]).
pub fn restart_delay(retry_after_ms: Option<u64>, attempt: u32, jitter: Duration) -> Duration {
    let wait = match attempt {
        0 => Duration::from_millis(retry_after_ms.unwrap_or(0)).min(MAX_RETRY_AFTER),
        n => FIRST_BACKOFF
            .saturating_mul(1 << (n - 1).min(8))
            .min(MAX_BACKOFF),
    };
    wait + jitter.min(MAX_JITTER)
}

/// A random wait up to [`MAX_JITTER`]: std's per-process random hash keys
/// are random enough to spread clients apart.
fn jitter() -> Duration {
    let random = RandomState::new().hash_one(std::time::SystemTime::now());
    let max = u64::try_from(MAX_JITTER.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(random % (max + 1))
}

/// Whether another attempt may succeed where this one failed: the new
/// process not listening or not ready yet, or busy, or still draining.
fn worth_retrying(err: &ClientError) -> bool {
    match err {
        ClientError::Connect { .. } | ClientError::Lost(_) | ClientError::Broken(_) => true,
        ClientError::Bye(reason, _) => matches!(reason, ByeReason::Restart | ByeReason::Shutdown),
        ClientError::Refused { code, .. } => matches!(
            code,
            ErrorCode::ServerBusy | ErrorCode::TooManyConnections | ErrorCode::Unavailable
        ),
        _ => false,
    }
}

/// Connects again to `target` and follows the handshake, trying
/// [`RESTART_ATTEMPTS`] times; the connection, its handshake and the
/// attempts it took.
async fn reconnect(
    target: &Target,
    retry_after_ms: Option<u64>,
    jar: Option<&TokenJar>,
    creds: &mut impl Credentials,
) -> Result<(Connection, Established, u32), ClientError> {
    let mut attempt = 0;
    loop {
        tokio::time::sleep(restart_delay(retry_after_ms, attempt, jitter())).await;
        attempt += 1;
        let result = match target.connect().await {
            Ok(mut conn) => handshake(&mut conn, jar, creds)
                .await
                .map(|established| (conn, established)),
            Err(err) => Err(err),
        };
        match result {
            Ok((conn, established)) => return Ok((conn, established, attempt)),
            Err(err) if worth_retrying(&err) && attempt < RESTART_ATTEMPTS => {}
            Err(err) => {
                return Err(ClientError::Restart {
                    attempts: attempt,
                    source: Box::new(err),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_wait_is_the_servers_bounded_then_a_doubling_back_off() {
        let none = Duration::ZERO;
        let ms = Duration::from_millis;
        assert_eq!(restart_delay(Some(300), 0, none), ms(300));
        assert_eq!(restart_delay(None, 0, none), ms(0));
        assert_eq!(restart_delay(Some(u64::MAX), 0, none), MAX_RETRY_AFTER);
        assert_eq!(restart_delay(Some(300), 1, none), ms(250));
        assert_eq!(restart_delay(Some(300), 2, none), ms(500));
        assert_eq!(restart_delay(Some(300), 4, none), ms(2000));
        assert_eq!(restart_delay(Some(300), 40, none), ms(2000));
        assert_eq!(restart_delay(Some(0), 0, ms(10_000)), MAX_JITTER);
        assert!(jitter() <= MAX_JITTER);
    }

    #[test]
    fn only_lines_with_no_answer_at_all_are_sent_again() {
        let mut in_flight = InFlight::default();
        for (id, text) in [(1, "done"), (2, "half"), (3, "unread"), (4, "later")] {
            in_flight.sent(id, text.into());
        }
        in_flight.replied(1, true).unwrap();
        in_flight.replied(2, false).unwrap();
        assert!(in_flight.replied(3, true).is_err(), "out of order");
        assert_eq!(in_flight.take_unread(), ["unread", "later"]);
        assert!(in_flight.lines.is_empty());
    }

    #[test]
    fn an_error_answers_the_oldest_line() {
        let mut in_flight = InFlight::default();
        in_flight.sent(1, "/nope".into());
        in_flight.sent(2, "next".into());
        in_flight.refused();
        assert_eq!(in_flight.take_unread(), ["next"]);
    }

    #[test]
    fn a_new_process_not_ready_is_retried_a_changed_key_is_not() {
        let refused = |code| ClientError::Refused {
            code,
            message: String::new(),
        };
        assert!(worth_retrying(&ClientError::Lost("reset".into())));
        assert!(worth_retrying(&ClientError::Bye(ByeReason::Restart, None)));
        assert!(worth_retrying(&refused(ErrorCode::ServerBusy)));
        assert!(!worth_retrying(&refused(ErrorCode::InvalidCredentials)));
        assert!(!worth_retrying(&ClientError::Identity(
            "key changed".into()
        )));
        assert!(!worth_retrying(&ClientError::Bye(ByeReason::Revoked, None)));
    }
}
