//! One established session of the upgrade scenario: the real client's
//! [`Conversation`] (echo-client's library, as `echo-client` itself uses
//! it) sending numbered lines, one at a time, and carrying on by itself
//! across every `bye restart`. What it counts is what the scenario sums.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use anyhow::{Context, bail};
use echo_client::{Connection, Conversation, Incoming, NoQuestions, TokenJar, handshake};
use echo_proto::{ByeReason, Message, ServerMsg};
use tokio::time::{Instant, timeout};

/// The longest a session waits for any frame: past it the run fails
/// rather than hangs (a restart takes well under a second).
const SILENCE: Duration = Duration::from_secs(30);

/// The most lines one session sends, whatever the time: a bound on the
/// loop besides `end` (a paced session sends 50 a second).
const MAX_LINES: u64 = 1_000_000;

/// What one session saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct SessionCounts {
    /// Lines it sent (each counted once, however often it went out).
    pub sent: u64,
    /// Lines answered with their own text, in order.
    pub answered: u64,
    /// Replies that answered no line waiting (a line answered twice).
    pub doubled: u64,
    /// `bye restart`s it carried on across.
    pub restarts: u64,
    /// Connections to the new process that failed before one let it in.
    pub refused: u64,
    /// The longest time between two answers, in milliseconds.
    pub longest_gap_ms: f64,
}

/// Runs one session on `addr`, resumed with the token in `jar`, until
/// `end`; one line every `pace` (`None`: the next as soon as the last is
/// answered). Password requests are counted in `asked`.
pub async fn run_session(
    addr: SocketAddr,
    jar: TokenJar,
    end: Instant,
    pace: Option<Duration>,
    asked: Arc<AtomicU64>,
) -> anyhow::Result<SessionCounts> {
    // Asked for a password, it counts the request and gives none.
    let mut creds = NoQuestions {
        asked,
        rejected: None,
    };
    let host = addr.ip().to_string();
    let mut conn = Connection::connect(&host, addr.port(), None).await?;
    handshake(&mut conn, Some(&jar), &mut creds)
        .await
        .context("the first resume")?;
    let mut conv = Conversation::new(conn);
    let mut tally = Tally::default();
    loop {
        if tally.waiting.is_empty() {
            if Instant::now() >= end || tally.counts.sent >= MAX_LINES {
                return Ok(tally.counts);
            }
            let text = format!("m{}", tally.counts.sent);
            conv.say(text.clone()).await?;
            tally.waiting.push_back(text);
            tally.counts.sent += 1;
        }
        let incoming = timeout(SILENCE, conv.recv())
            .await
            .context("no answer for 30 s")??;
        match incoming {
            Incoming::Msg(ServerMsg::Reply { text, last, .. }) => {
                if last {
                    tally.answer(&text);
                    if let Some(pace) = pace {
                        tokio::time::sleep(pace).await;
                    }
                }
            }
            Incoming::Msg(ServerMsg::Bye {
                reason: ByeReason::Restart,
                retry_after_ms,
                ..
            }) => {
                let resumed = conv.restart(retry_after_ms, Some(&jar), &mut creds).await?;
                tally.counts.restarts += 1;
                tally.counts.refused += u64::from(resumed.attempts.saturating_sub(1));
            }
            Incoming::Msg(other) => bail!("the session ended: unexpected {}", other.kind()),
            other => bail!("the session ended: {other:?}"),
        }
    }
}

/// A session's counts, and the lines it waits for.
struct Tally {
    counts: SessionCounts,
    waiting: VecDeque<String>,
    last_answer: Instant,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            counts: SessionCounts::default(),
            waiting: VecDeque::new(),
            last_answer: Instant::now(),
        }
    }
}

impl Tally {
    /// A final reply with `text`: the oldest line's answer, or a double.
    fn answer(&mut self, text: &str) {
        if self.waiting.front().map(String::as_str) == Some(text) {
            self.waiting.pop_front();
            self.counts.answered += 1;
        } else {
            self.counts.doubled += 1;
        }
        let gap = self.last_answer.elapsed().as_secs_f64() * 1000.0;
        self.counts.longest_gap_ms = self.counts.longest_gap_ms.max(gap);
        self.last_answer = Instant::now();
    }
}
