use echo_proto::{ByeReason, ErrorCode};

/// Why the client could not do what was asked. The message is a sentence
/// for people; [`ClientError::exit_code`] is for scripts.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad flags, config file or environment.
    #[error("{0}")]
    Usage(String),
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
    /// The server sent something this client cannot follow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server's identity could not be verified (an unknown key refused,
    /// a changed key, an untrusted chain, a wrong host name), or the TLS
    /// handshake failed.
    #[error("{0}")]
    Identity(String),
    /// Local I/O: the token file, the terminal.
    #[error("{0}")]
    Local(String),
}

impl ClientError {
    /// A question on the terminal that could not be answered: `cancelled`
    /// when the person pressed Ctrl-D.
    pub fn from_question(err: &std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::UnexpectedEof {
            ClientError::Local("cancelled".into())
        } else {
            ClientError::Local(format!("cannot read the answer: {err}"))
        }
    }

    /// The exit code documented in the README:
    /// 1 usage or local error, 2 cannot connect, 3 refused (authentication or
    /// identification), 4 connection lost or closed early, 5 protocol error,
    /// 6 the server's identity could not be verified or TLS failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) | ClientError::MissingCredential(_) | ClientError::Local(_) => 1,
            ClientError::Connect { .. } => 2,
            ClientError::Refused { .. } | ClientError::Bye(ByeReason::TooManyAttempts) => 3,
            ClientError::Bye(_) | ClientError::Lost(_) => 4,
            ClientError::Protocol(_) => 5,
            ClientError::Identity(_) => 6,
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
