use std::{io, str::Utf8Error};

use crate::ErrorCode;

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
