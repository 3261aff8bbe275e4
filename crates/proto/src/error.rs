use std::{io, str::Utf8Error};

use serde::{Deserialize, Serialize};

/// Stable, machine-readable error codes carried by `error` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A frame header announced more than the maximum length.
    FrameTooLarge,
    /// A payload was not valid UTF-8.
    InvalidUtf8,
    /// A payload was not a JSON object.
    BadJson,
    /// The `type` field was missing or unknown.
    UnknownType,
    /// A field was missing or had the wrong type.
    BadField,
    /// A valid message that is not allowed in the connection's current state.
    UnexpectedMessage,
    /// A `/command` the server does not know.
    UnknownCommand,
    /// A `/command` with bad arguments.
    BadCommand,
    /// The server is at its connection limit.
    ServerBusy,
    /// The client's address (an IPv6 /64) has as many connections, or
    /// connections still in the handshake, as the server allows one source.
    TooManyConnections,
    /// A name that is empty, too long or has unprintable characters.
    InvalidName,
    /// `register` with a user name that exists.
    NameTaken,
    /// `register` with a password that is too short, too long or too common.
    WeakPassword,
    /// Unknown user or wrong password (deliberately indistinguishable).
    InvalidCredentials,
    /// `resume` with a token that is unknown, expired or revoked.
    TokenInvalid,
    /// Too many attempts; try again later.
    RateLimited,
    /// The server failed internally (for example, its store could not write).
    Internal,
    /// `login`, `register` or `resume` on a plain (not TLS) connection from
    /// outside the loopback range: the server's protected mode.
    TlsRequired,
    /// The store (a database) cannot be reached for this step; always fatal.
    Unavailable,
    /// A code this version does not know (sent by a newer server).
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The code as it is written on the wire (`"rate_limited"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::InvalidUtf8 => "invalid_utf8",
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadField => "bad_field",
            ErrorCode::UnexpectedMessage => "unexpected_message",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::BadCommand => "bad_command",
            ErrorCode::ServerBusy => "server_busy",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::WeakPassword => "weak_password",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::TokenInvalid => "token_invalid",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
            ErrorCode::TlsRequired => "tls_required",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Other => "other",
        }
    }

    /// Every code a server of this version sends.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::FrameTooLarge,
        ErrorCode::InvalidUtf8,
        ErrorCode::BadJson,
        ErrorCode::UnknownType,
        ErrorCode::BadField,
        ErrorCode::UnexpectedMessage,
        ErrorCode::UnknownCommand,
        ErrorCode::BadCommand,
        ErrorCode::ServerBusy,
        ErrorCode::TooManyConnections,
        ErrorCode::InvalidName,
        ErrorCode::NameTaken,
        ErrorCode::WeakPassword,
        ErrorCode::InvalidCredentials,
        ErrorCode::TokenInvalid,
        ErrorCode::RateLimited,
        ErrorCode::Internal,
        ErrorCode::TlsRequired,
        ErrorCode::Unavailable,
    ];
}

/// Everything that can go wrong reading or writing the wire format.
///
/// "Not enough bytes yet" is never an error: the codec returns `Ok(None)`.
/// No variant carries a message's content, so an error can be logged without
/// leaking a password or token that the message held.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// A header announced (or a sender tried to write) a payload longer than
    /// the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// The announced or attempted payload length.
        len: usize,
        /// The maximum in force.
        max: usize,
    },
    /// The payload is not valid UTF-8.
    #[error("payload is not valid UTF-8 (first bad byte at offset {})", .0.valid_up_to())]
    InvalidUtf8(#[source] Utf8Error),
    /// The payload is not JSON at all.
    #[error("payload is not valid JSON ({0})")]
    BadJson(String),
    /// The payload is JSON, but not an object.
    #[error("message is not a JSON object")]
    NotAnObject,
    /// The object has no `"type"` field holding a string.
    #[error("message has no string \"type\" field")]
    MissingType,
    /// The `"type"` is not one this side of the protocol knows.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// The type is known but a field is missing or has the wrong type.
    #[error("bad {kind} message: {detail}")]
    BadField {
        /// The message's `"type"`.
        kind: String,
        /// Which field, or where in the payload, without its value.
        detail: String,
    },
    /// A message could not be turned into JSON (a bug, not bad input).
    #[error("could not serialize message: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The underlying stream failed, or ended in the middle of a frame.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl ProtoError {
    /// The wire error code a server sends back for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtoError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            ProtoError::InvalidUtf8(_) => ErrorCode::InvalidUtf8,
            ProtoError::BadJson(_) | ProtoError::NotAnObject => ErrorCode::BadJson,
            ProtoError::MissingType | ProtoError::UnknownType(_) => ErrorCode::UnknownType,
            ProtoError::BadField { .. } => ErrorCode::BadField,
            ProtoError::Serialize(_) | ProtoError::Io(_) => ErrorCode::Internal,
        }
    }

    /// Whether the byte stream is no longer usable after this error.
    ///
    /// A payload that fails to parse leaves the framing intact, so the
    /// connection can go on; an oversized header or an I/O failure does not.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ProtoError::FrameTooLarge { .. } | ProtoError::Io(_))
    }
}
