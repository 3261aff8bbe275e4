use echo_proto::{ByeCause, ByeReason, ErrorCode, ProtoError};

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
    /// The server closed the connection, saying why (and, for a revoked
    /// session, the cause).
    #[error("{}", bye_text(*.0, *.1))]
    Bye(ByeReason, Option<ByeCause>),
    /// The server restarted (`bye restart`) and connecting to it again
    /// failed `attempts` times; `source` is the last failure. The exit
    /// code is that failure's.
    #[error("the server restarted and connecting again failed ({attempts} attempts): {source}")]
    Restart {
        /// How many times the client tried.
        attempts: u32,
        /// The last failure.
        #[source]
        source: Box<ClientError>,
    },
    /// The connection broke or the server went away without a word.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The connection broke while a message was sent.
    #[error("connection lost: {0}")]
    Broken(#[source] ProtoError),
    /// The server sent something this client cannot follow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The other end speaks the other transport: TLS where this client
    /// spoke plain TCP, or the other way round. The sentence says which.
    #[error("{0}")]
    WrongTransport(String),
    /// Pipe or one-shot mode: the server answered this many of the lines
    /// with an `error` (each one was reported as it came).
    #[error("the server refused {0} of the lines sent")]
    LinesRefused(usize),
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

    /// A plain connection to a server that answered with a TLS record.
    pub fn speaks_tls() -> Self {
        ClientError::WrongTransport(
            "the server speaks TLS (it answered with a TLS record): connect with --tls".into(),
        )
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
    /// 6 the server's identity could not be verified or TLS failed, 7 a line
    /// of pipe or one-shot mode was refused, 8 the wrong transport (TLS
    /// against plain, or plain against TLS).
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_)
            | ClientError::UsageFrom { .. }
            | ClientError::MissingCredential(_)
            | ClientError::Local(_)
            | ClientError::LocalFrom { .. }
            | ClientError::DamagedTokenFile { .. } => 1,
            ClientError::Connect { .. } => 2,
            ClientError::Refused { .. } | ClientError::Bye(ByeReason::TooManyAttempts, _) => 3,
            ClientError::Bye(..) | ClientError::Lost(_) | ClientError::Broken(_) => 4,
            ClientError::Protocol(_) => 5,
            ClientError::Identity(_) | ClientError::Handshake { .. } => 6,
            ClientError::LinesRefused(_) => 7,
            ClientError::WrongTransport(_) => 8,
            ClientError::Restart { source, .. } => source.exit_code(),
        }
    }
}

/// Why a server said `bye`, in one sentence: a revoked session says its
/// cause plainly; anything else is "the server closed the connection" and
/// why.
pub fn bye_text(reason: ByeReason, cause: Option<ByeCause>) -> String {
    let why = match reason {
        ByeReason::Revoked => return revoked_text(cause).into(),
        ByeReason::Shutdown => "it is shutting down",
        ByeReason::Timeout => "timed out",
        ByeReason::Logout => "logged out",
        ByeReason::TooManyAttempts => "too many failed attempts",
        ByeReason::Kicked => "an operator ended this connection",
        ByeReason::Restart => "it is restarting",
        ByeReason::Other => "no reason this client knows",
    };
    format!("the server closed the connection ({why})")
}

/// Why the session was revoked, one sentence per cause; a cause this
/// client does not know, or none (an older server), gets the plain fact.
fn revoked_text(cause: Option<ByeCause>) -> &'static str {
    match cause {
        Some(ByeCause::Logout) => "you were logged out (the session ended elsewhere)",
        Some(ByeCause::Reuse) => "your session was revoked: its token was used by someone else",
        Some(ByeCause::Operator) => "an operator ended your session",
        Some(ByeCause::PasswordChanged) => "your password was changed; log in again",
        Some(ByeCause::Expired) => "your session expired; log in again",
        Some(ByeCause::Other) | None => "your session was revoked; log in again",
    }
}
