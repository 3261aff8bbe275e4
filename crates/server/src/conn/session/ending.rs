//! How a connection ends: decides the last frame sent and the log line.

use std::{fmt, io};

use echo_proto::{ByeCause, ByeReason, ErrorCode, ServerMsg};

use crate::store::EndCause;

/// How a connection ends.
#[derive(Debug)]
pub(crate) enum Ending {
    /// The client closed the connection between frames.
    ClientLeft,
    /// The connection broke: a reset, or an end in the middle of a frame.
    Lost(io::Error),
    /// A write did not finish in time (the client stopped reading).
    WriteTimedOut,
    /// The output held for the client passed `max_output_buffer`.
    OutputOverLimit { held: usize, max_output: usize },
    /// The handshake or idle deadline passed: `bye {timeout}`.
    Timeout,
    /// The server is shutting down: `bye {shutdown}`.
    Shutdown,
    /// A new process took the port over (`echo-server upgrade`): `bye
    /// {restart}`, the client to reconnect after `retry_after_ms`.
    Restart { retry_after_ms: u64 },
    /// The client logged out: `bye {logout}`.
    Logout,
    /// Too many failed attempts: `bye {too_many_attempts}`.
    TooManyAttempts,
    /// The session chain was revoked: `bye {revoked}`, with the cause when
    /// it is known.
    Revoked(Option<EndCause>),
    /// An operator kicked the connection: `bye {kicked}`.
    Kicked,
    /// A PROXY header from an address not trusted to send one: closed
    /// without a word.
    UntrustedProxy,
    /// A TLS ClientHello on a plain port: closed without a word (the client
    /// could not read a frame).
    TlsOnPlainPort,
    /// The store could not be reached for this step: a fatal
    /// `error {unavailable}` (logged at `info`: the store warns once per
    /// outage, not once per client).
    StoreUnavailable,
    /// A protocol violation: a fatal `error` frame.
    Violation { code: ErrorCode, message: String },
}

impl Ending {
    /// A valid message at the wrong time: a fatal protocol violation.
    pub(crate) fn unexpected(kind: &str, when: &str) -> Self {
        Ending::Violation {
            code: ErrorCode::UnexpectedMessage,
            message: format!("{kind} is not allowed {when}"),
        }
    }

    /// The last frame this ending calls for, if the client can still get one.
    pub(crate) fn farewell(&self) -> Option<ServerMsg> {
        let reason = match self {
            Ending::Revoked(cause) => {
                return Some(ServerMsg::Bye {
                    reason: ByeReason::Revoked,
                    cause: cause.map(bye_cause),
                    retry_after_ms: None,
                });
            }
            Ending::Restart { retry_after_ms } => {
                return Some(ServerMsg::Bye {
                    reason: ByeReason::Restart,
                    cause: None,
                    retry_after_ms: Some(*retry_after_ms),
                });
            }
            Ending::Timeout => ByeReason::Timeout,
            Ending::Shutdown => ByeReason::Shutdown,
            Ending::Logout => ByeReason::Logout,
            Ending::TooManyAttempts => ByeReason::TooManyAttempts,
            Ending::Kicked => ByeReason::Kicked,
            Ending::Violation { code, message } => {
                return Some(ServerMsg::error(*code, message.clone(), true));
            }
            Ending::StoreUnavailable => {
                let refusal = crate::auth::unavailable();
                let code = super::codes::wire_code(refusal.reason);
                return Some(ServerMsg::error(code, refusal.message, true));
            }
            Ending::ClientLeft
            | Ending::Lost(_)
            | Ending::WriteTimedOut
            | Ending::OutputOverLimit { .. }
            | Ending::UntrustedProxy
            | Ending::TlsOnPlainPort => return None,
        };
        Some(ServerMsg::bye(reason))
    }

    /// Whether the client is let go gracefully (what is queued sent, our
    /// side closed first): after a last frame, and for a TLS client on a
    /// plain port, so that it reads our `hello` (and can tell this is not a
    /// TLS server) instead of a reset.
    pub(crate) fn lets_go_gracefully(&self) -> bool {
        self.farewell().is_some() || matches!(self, Ending::TlsOnPlainPort)
    }

    /// Whether this is an ordinary end (logged at `info`, others at `warn`).
    pub(crate) fn is_ordinary(&self) -> bool {
        matches!(
            self,
            Ending::ClientLeft
                | Ending::Logout
                | Ending::Shutdown
                | Ending::Restart { .. }
                | Ending::Revoked(_)
                | Ending::Kicked
                | Ending::StoreUnavailable
        )
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::ClientLeft => f.write_str("client closed the connection"),
            Ending::Lost(err) => write!(f, "connection lost: {err}"),
            Ending::WriteTimedOut => f.write_str("client stopped reading (write timed out)"),
            Ending::OutputOverLimit { held, max_output } => write!(
                f,
                "output held for the client ({held} bytes) passed max_output_buffer ({max_output} bytes)"
            ),
            Ending::Timeout => f.write_str("timed out"),
            Ending::Shutdown => f.write_str("server shutting down"),
            Ending::Restart { .. } => f.write_str("server restarting (upgraded)"),
            Ending::Logout => f.write_str("logged out"),
            Ending::TooManyAttempts => f.write_str("too many failed attempts"),
            Ending::Revoked(Some(cause)) => write!(f, "session revoked ({})", cause.as_str()),
            Ending::Revoked(None) => f.write_str("session revoked"),
            Ending::Kicked => f.write_str("kicked by an operator"),
            Ending::UntrustedProxy => {
                f.write_str("PROXY header from an address not in proxy_protocol_from")
            }
            Ending::TlsOnPlainPort => f.write_str("a TLS client on a plain port"),
            Ending::StoreUnavailable => f.write_str("the store is unavailable"),
            Ending::Violation { code, message } => {
                write!(f, "protocol violation ({code:?}): {message}")
            }
        }
    }
}

/// A chain's end cause as `bye` says it.
fn bye_cause(cause: EndCause) -> ByeCause {
    match cause {
        EndCause::Logout => ByeCause::Logout,
        EndCause::Reuse => ByeCause::Reuse,
        EndCause::Operator => ByeCause::Operator,
        EndCause::PasswordChanged => ByeCause::PasswordChanged,
        EndCause::Expired => ByeCause::Expired,
    }
}
