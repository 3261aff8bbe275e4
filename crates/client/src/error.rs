use echo_proto::{ByeReason, ErrorCode, ProtoError};

/// A source error of any kind (I/O, TOML, rustls, a join).
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the client could not do what was asked. The message is a sentence
/// for people; [`ClientError::exit_code`] is for scripts. Variants that
/// wrap a failure carry it as their source; their message still names it,
/// as the client prints only the message.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad flags, config file or environment.
    #[error("{0}")]
    Usage(String),
    /// A file the flags or config name could not be used: `what` says
    /// which and for what.
    #[error("{what}: {source}")]
    UsageFrom {
        /// What failed, e.g. `cannot read config file PATH`.
        what: String,
        /// Why.
        #[source]
        source: Source,
    },
    /// A credential the pipe mode needs was not given.
    #[error("missing credential: set {0}")]
    MissingCredential(&'static str),
    /// The server could not be reached.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// Why, in words.
        reason: String,
        /// The socket's error, if one said why.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The server refused the name, password or token.
    #[error("{message}")]
    Refused {
        /// The server's code.
        code: ErrorCode,
        /// The server's sentence.
        message: String,
    },
    /// The server closed the connection, saying why.
    #[error("the server closed the connection ({})", bye_text(*.0))]
    Bye(ByeReason),
    /// The connection broke or the server went away without a word.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The connection broke while a message was sent.
    #[error("connection lost: {0}")]
    Broken(#[source] ProtoError),
    /// The server sent something this client cannot follow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server's identity could not be verified (an unknown key refused,
    /// a changed key, an untrusted chain, a wrong host name).
    #[error("{0}")]
    Identity(String),
    /// The TLS handshake failed: `message` says why in words.
    #[error("{message}")]
    Handshake {
        /// `host:port: why`.
        message: String,
        /// The handshake's error.
        #[source]
        source: std::io::Error,
    },
    /// Local I/O: the token file, the terminal.
    #[error("{0}")]
    Local(String),
    /// Local I/O that failed: `what` says which.
    #[error("{what}: {source}")]
    LocalFrom {
        /// What failed, e.g. `token file PATH`.
        what: String,
        /// Why.
        #[source]
        source: Source,
    },
    /// The token file is not what this client writes.
    #[error("the token file {} is damaged ({source}); delete it to log in again", path.display())]
    DamagedTokenFile {
        /// The file.
        path: std::path::PathBuf,
        /// What parsing it said.
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// A usage error caused by `source`.
    pub fn usage_from(what: impl Into<String>, source: impl Into<Source>) -> Self {
        ClientError::UsageFrom {
            what: what.into(),
            source: source.into(),
        }
    }

    /// A local error caused by `source`.
    pub fn local_from(what: impl Into<String>, source: impl Into<Source>) -> Self {
        ClientError::LocalFrom {
            what: what.into(),
            source: source.into(),
        }
    }

    /// A question on the terminal that could not be answered: `cancelled`
    /// when the person pressed Ctrl-D.
    pub fn from_question(err: std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::UnexpectedEof {
            ClientError::Local("cancelled".into())
        } else {
            ClientError::local_from("cannot read the answer", err)
        }
    }

    /// The exit code documented in the README:
    /// 1 usage or local error, 2 cannot connect, 3 refused (authentication or
    /// identification), 4 connection lost or closed early, 5 protocol error,
    /// 6 the server's identity could not be verified or TLS failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_)
            | ClientError::UsageFrom { .. }
            | ClientError::MissingCredential(_)
            | ClientError::Local(_)
            | ClientError::LocalFrom { .. }
            | ClientError::DamagedTokenFile { .. } => 1,
            ClientError::Connect { .. } => 2,
            ClientError::Refused { .. } | ClientError::Bye(ByeReason::TooManyAttempts) => 3,
            ClientError::Bye(_) | ClientError::Lost(_) | ClientError::Broken(_) => 4,
            ClientError::Protocol(_) => 5,
            ClientError::Identity(_) | ClientError::Handshake { .. } => 6,
        }
    }
}

/// Why a server said `bye`, in words.
pub fn bye_text(reason: ByeReason) -> &'static str {
    match reason {
        ByeReason::Shutdown => "it is shutting down",
        ByeReason::Timeout => "timed out",
        ByeReason::Logout => "logged out",
        ByeReason::TooManyAttempts => "too many failed attempts",
        ByeReason::Revoked => {
            "the session was revoked (logged out elsewhere, or its token was used by someone else)"
        }
        ByeReason::Kicked => "an operator ended this connection",
        ByeReason::Other => "no reason this client knows",
    }
}
