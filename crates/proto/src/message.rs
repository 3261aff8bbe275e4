//! Protocol v1: the messages carried in frames, one JSON object each.

use bytes::BytesMut;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    error::{ErrorCode, ProtoError},
    secret::Secret,
};

/// The protocol version announced in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The port a server listens on and a client connects to when nothing else
/// names one (the lab's 13131).
pub const DEFAULT_PORT: u16 = 13131;

/// The host a server listens on and a client connects to by default.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// What the server does on connect: identify clients by IP (lab task 5) or
/// authenticate users (lab task 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Identification by IP address and a name.
    Ident,
    /// Authentication with a user name and password, or a session token.
    Auth,
}

impl std::fmt::Display for Mode {
    /// The mode as the flag, the config file and the wire spell it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Ident => "ident",
            Mode::Auth => "auth",
        })
    }
}

/// Why the server closes a connection, sent in `bye`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ByeReason {
    /// The server is shutting down.
    Shutdown,
    /// The handshake or the idle time ran out.
    Timeout,
    /// The client logged out.
    Logout,
    /// Too many failed authentication attempts on this connection.
    TooManyAttempts,
    /// The session this connection was authenticated by was revoked;
    /// `bye`'s `cause` says why ([`ByeCause`]).
    Revoked,
    /// An operator ended this connection (`echo-server kick`).
    Kicked,
    /// The server is being replaced by a new process on the same port
    /// (`echo-server upgrade`): reconnect now (after `retry_after_ms`) and
    /// resume with the saved token; nothing sent before this was lost.
    Restart,
    /// A reason this version does not know (sent by a newer server).
    #[serde(other)]
    Other,
}

/// Why a session was revoked, sent in `bye` with reason `revoked`. A
/// server before this field sends none; a client treats a missing or
/// unknown cause alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ByeCause {
    /// The session logged out on another connection.
    Logout,
    /// A token of the session that had been replaced was presented again:
    /// someone else holds a copy.
    Reuse,
    /// An operator revoked the session or removed the user.
    Operator,
    /// The user's password was changed.
    PasswordChanged,
    /// The session reached the end of its lifetime.
    Expired,
    /// A cause this version does not know (sent by a newer server).
    #[serde(other)]
    Other,
}

/// Messages the server sends. See `docs/PROTOCOL.md` for each one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Always the first frame of a connection.
    Hello {
        /// Server software name and version.
        server: String,
        /// Protocol version, [`PROTOCOL_VERSION`].
        proto: u32,
        /// Whether the server identifies or authenticates.
        mode: Mode,
    },
    /// Identification mode: this IP is unknown, send a `name`.
    AskName {},
    /// Identification mode: "Hello, NAME".
    Greet {
        /// The client's name.
        name: String,
        /// True when this IP was known before this connection.
        known: bool,
    },
    /// Authentication mode: send `resume`, `login` or `register`.
    AskAuth {
        /// The user last authenticated from this IP, if any.
        suggested_user: Option<String>,
    },
    /// Authenticated; `token` replaces any token the client held before.
    Welcome {
        /// The authenticated user.
        user: String,
        /// The session token to present in a later `resume`.
        token: Secret,
        /// When the token expires at the latest, in Unix seconds.
        expires_at: u64,
    },
    /// One answer to the client's `say` number `re`.
    Reply {
        /// The `id` of the `say` this answers.
        re: u64,
        /// The answer.
        text: String,
        /// True on the final reply to that `say`.
        last: bool,
    },
    /// Something went wrong; `fatal` means the server closes the connection.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable sentence.
        message: String,
        /// Whether the connection closes after this frame.
        fatal: bool,
        /// Authentication attempts left on this connection, where relevant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempts_left: Option<u32>,
    },
    /// The server is closing this connection.
    Bye {
        /// Why.
        reason: ByeReason,
        /// With `revoked`: why the session was revoked. Absent otherwise,
        /// and from servers that do not say.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<ByeCause>,
        /// With `restart`: how long to wait before reconnecting, in
        /// milliseconds. Absent otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

/// Messages the client sends. See `docs/PROTOCOL.md` for each one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Identification mode: the name to remember for this IP.
    Name {
        /// The name.
        name: String,
    },
    /// Authentication mode: log in with a saved session token.
    Resume {
        /// The token from the last `welcome`.
        token: Secret,
    },
    /// Authentication mode: log in with a password.
    Login {
        /// User name.
        user: String,
        /// Password.
        password: Secret,
    },
    /// Authentication mode: create a user and log in.
    Register {
        /// User name.
        user: String,
        /// Password.
        password: Secret,
    },
    /// A line of conversation; answered by one or more `reply` frames.
    Say {
        /// Client-chosen number, echoed in each reply's `re`.
        id: u64,
        /// The text.
        text: String,
    },
    /// End the session: the token is revoked and the server says `bye`.
    Logout {},
}

/// One side's message enum: what [`decode_message`] needs to tell an
/// unknown type from a bad field.
pub trait Message: Serialize + DeserializeOwned {
    /// Every `"type"` value of this enum.
    const TYPES: &'static [&'static str];

    /// This message's `"type"` value, for logs.
    fn kind(&self) -> &'static str;
}

impl ServerMsg {
    /// An `error` frame with no attempt count.
    pub fn error(code: ErrorCode, message: impl Into<String>, fatal: bool) -> Self {
        ServerMsg::Error {
            code,
            message: message.into(),
            fatal,
            attempts_left: None,
        }
    }

    /// A `bye` with no cause.
    pub fn bye(reason: ByeReason) -> Self {
        ServerMsg::Bye {
            reason,
            cause: None,
            retry_after_ms: None,
        }
    }
}

impl Message for ServerMsg {
    const TYPES: &'static [&'static str] = &[
        "hello", "ask_name", "greet", "ask_auth", "welcome", "reply", "error", "bye",
    ];

    fn kind(&self) -> &'static str {
        match self {
            ServerMsg::Hello { .. } => "hello",
            ServerMsg::AskName {} => "ask_name",
            ServerMsg::Greet { .. } => "greet",
            ServerMsg::AskAuth { .. } => "ask_auth",
            ServerMsg::Welcome { .. } => "welcome",
            ServerMsg::Reply { .. } => "reply",
            ServerMsg::Error { .. } => "error",
            ServerMsg::Bye { .. } => "bye",
        }
    }
}

impl Message for ClientMsg {
    const TYPES: &'static [&'static str] =
        &["name", "resume", "login", "register", "say", "logout"];

    fn kind(&self) -> &'static str {
        match self {
            ClientMsg::Name { .. } => "name",
            ClientMsg::Resume { .. } => "resume",
            ClientMsg::Login { .. } => "login",
            ClientMsg::Register { .. } => "register",
            ClientMsg::Say { .. } => "say",
            ClientMsg::Logout {} => "logout",
        }
    }
}

/// Turns a frame's payload into text; invalid UTF-8 is an error, never a
/// lossy replacement. The buffer is reused, not copied.
pub fn decode_text(payload: BytesMut) -> Result<String, ProtoError> {
    String::from_utf8(payload.into()).map_err(|err| ProtoError::InvalidUtf8(err.utf8_error()))
}

/// Parses a frame's payload as one message of `T`.
///
/// The well-formed case costs one parse; only a payload that fails is looked
/// at again to tell which [`ProtoError`] it is.
pub fn decode_message<T: Message>(payload: &[u8]) -> Result<T, ProtoError> {
    let text = std::str::from_utf8(payload).map_err(ProtoError::InvalidUtf8)?;
    serde_json::from_str(text).map_err(|err| classify::<T>(text, &err))
}

/// Longest piece of a client-chosen `type` value repeated in an error.
const MAX_ECHOED_TYPE: usize = 40;

fn classify<T: Message>(text: &str, err: &serde_json::Error) -> ProtoError {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(err) => return ProtoError::BadJson(err.to_string()),
    };
    let Some(object) = value.as_object() else {
        return ProtoError::NotAnObject;
    };
    let Some(kind) = object.get("type").and_then(|kind| kind.as_str()) else {
        return ProtoError::MissingType;
    };
    if !T::TYPES.contains(&kind) {
        return ProtoError::UnknownType(kind.chars().take(MAX_ECHOED_TYPE).collect());
    }
    // serde's own text can quote the offending value, which may be a
    // password sent with the wrong type: keep only what names the field.
    let message = err.to_string();
    let detail = if message.starts_with("missing field") {
        message
            .split(" at line")
            .next()
            .unwrap_or(&message)
            .to_owned()
    } else {
        format!(
            "a field has the wrong type or value (near column {})",
            err.column()
        )
    };
    ProtoError::BadField {
        kind: kind.to_owned(),
        detail,
    }
}
