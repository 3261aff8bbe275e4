//! Following the server from `hello` to the conversation: identification
//! (lab task 5) or authentication (lab task 6), resuming with a saved token
//! when there is one.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use echo_proto::{ClientMsg, ErrorCode, Mode, Secret, ServerMsg};

use crate::{ClientError, Connection, TokenJar, jar::JarLock};

/// What a person (prompts) or a script (flags and environment) answers.
pub trait Credentials {
    /// Identification mode: the name to give this server.
    fn name(&mut self) -> Result<String, ClientError>;

    /// Authentication mode: log in or register; `suggested_user` is the
    /// server's guess from this address.
    fn choose(&mut self, suggested_user: Option<&str>) -> Result<AuthRequest, ClientError>;

    /// The server refused the last answer (`attempts_left` for passwords).
    /// `Ok` asks again; an error gives up.
    fn refused(
        &mut self,
        code: ErrorCode,
        message: &str,
        attempts_left: Option<u32>,
    ) -> Result<(), ClientError>;

    /// The saved token for `server` was not accepted; a password is needed
    /// now. Says so (the default prints it on standard error).
    fn token_rejected(&mut self, server: &str) {
        eprintln!("echo-client: {}", token_rejected_text(server));
    }
}

/// The credentials of a connection that must need none (a resume after
/// `bye restart` that should not disturb anyone): asked for a name or a
/// password, it gives none ([`ClientError::MissingCredential`]) and counts
/// the question in `asked`; a refused token is noted, not printed.
#[derive(Debug, Default, Clone)]
pub struct NoQuestions {
    /// Questions asked (shared: the bench counts them over its sessions).
    pub asked: Arc<AtomicU64>,
    /// The server whose saved token was refused, if one was.
    pub rejected: Option<String>,
}

impl Credentials for NoQuestions {
    fn name(&mut self) -> Result<String, ClientError> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        Err(ClientError::MissingCredential("a name"))
    }

    fn choose(&mut self, _suggested: Option<&str>) -> Result<AuthRequest, ClientError> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        Err(ClientError::MissingCredential("a password"))
    }

    fn refused(
        &mut self,
        code: ErrorCode,
        message: &str,
        _: Option<u32>,
    ) -> Result<(), ClientError> {
        Err(ClientError::Refused {
            code,
            message: message.to_owned(),
        })
    }

    fn token_rejected(&mut self, server: &str) {
        self.rejected = Some(server.to_owned());
    }
}

/// What a client says when the saved session was refused.
pub fn token_rejected_text(server: &str) -> String {
    format!("the saved session for {server} was revoked or has expired; a password is needed")
}

/// An answer to `ask_auth`: log in as, or register, `user`.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    /// Create the user rather than log in.
    pub register: bool,
    /// User name.
    pub user: String,
    /// Password.
    pub password: Secret,
}

/// Where the handshake ended: in the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Established {
    /// The server's software, from `hello`.
    pub server: String,
    /// Identification or authentication.
    pub mode: Mode,
    /// The name the server knows us by.
    pub name: String,
    /// Identification: whether the address was known. Authentication:
    /// whether a saved token let us in.
    pub recognised: bool,
}

/// Reads `hello` and follows the server's mode until the conversation can
/// start. In authentication mode a token saved in `jar` for this server is
/// presented first, without asking anything; each `welcome` replaces the
/// saved token, and a rejected one is deleted.
pub async fn handshake(
    conn: &mut Connection,
    jar: Option<&TokenJar>,
    creds: &mut impl Credentials,
) -> Result<Established, ClientError> {
    let (server, mode) = match conn.recv_msg().await? {
        ServerMsg::Hello {
            server,
            proto: 1,
            mode,
            ..
        } => (server, mode),
        ServerMsg::Hello { proto, .. } => {
            return Err(ClientError::Protocol(format!(
                "the server speaks protocol {proto}; this client speaks 1"
            )));
        }
        other => return Err(unexpected(&other)),
    };
    let (name, recognised) = match mode {
        Mode::Ident => identify(conn, creds).await?,
        Mode::Auth => authenticate(conn, jar, creds).await?,
    };
    Ok(Established {
        server,
        mode,
        name,
        recognised,
    })
}

async fn identify(
    conn: &mut Connection,
    creds: &mut impl Credentials,
) -> Result<(String, bool), ClientError> {
    loop {
        match conn.recv_msg().await? {
            ServerMsg::AskName {} => {
                let name = creds.name()?;
                conn.send(&ClientMsg::Name { name }).await?;
            }
            ServerMsg::Greet { name, known } => return Ok((name, known)),
            other => refusal_or_end(other, creds)?,
        }
    }
}

async fn authenticate(
    conn: &mut Connection,
    jar: Option<&TokenJar>,
    creds: &mut impl Credentials,
) -> Result<(String, bool), ClientError> {
    let server = conn.server().to_owned();
    let (mut resuming, mut held) = resume(conn, jar, &server).await?;
    let mut suggested: Option<String> = None;
    loop {
        match conn.recv_msg().await? {
            ServerMsg::AskAuth { suggested_user } => {
                suggested = suggested_user;
                if !resuming {
                    attempt(conn, creds, suggested.as_deref()).await?;
                }
            }
            ServerMsg::Welcome { user, token, .. } => {
                save(jar, &server, held, &token).await?;
                return Ok((user, resuming));
            }
            ServerMsg::Error {
                code: ErrorCode::TokenInvalid,
                fatal: false,
                ..
            } if resuming => {
                // An `ask_auth` follows; the prompts start there.
                resuming = false;
                if let Some(jar) = jar {
                    jar.remove(&server)?;
                }
                // Nothing more to keep in step: free the jar before asking.
                held = None;
                creds.token_rejected(&server);
            }
            other => {
                // The last failure is followed by `bye`: no point asking.
                let last = matches!(
                    other,
                    ServerMsg::Error {
                        attempts_left: Some(0),
                        ..
                    }
                );
                refusal_or_end(other, creds)?;
                if !last {
                    attempt(conn, creds, suggested.as_deref()).await?;
                }
            }
        }
    }
}

/// Sends the saved token for `server`, if there is one: whether it did,
/// and the jar's lock, held from reading the token until its successor is
/// saved, so that clients on this machine take turns instead of replaying
/// each other's tokens (which the server would take for theft).
async fn resume(
    conn: &mut Connection,
    jar: Option<&TokenJar>,
    server: &str,
) -> Result<(bool, Option<JarLock>), ClientError> {
    let Some(jar) = jar else {
        return Ok((false, None));
    };
    let held = jar.lock().await?;
    match jar.get(server)? {
        Some(token) => {
            // Sent before reading `ask_auth`: the server accepts that order.
            conn.send(&ClientMsg::Resume { token }).await?;
            Ok((true, Some(held)))
        }
        None => Ok((false, None)),
    }
}

/// Saves the token of a `welcome` for `server`, then lets the jar go.
async fn save(
    jar: Option<&TokenJar>,
    server: &str,
    held: Option<JarLock>,
    token: &Secret,
) -> Result<(), ClientError> {
    if let Some(jar) = jar {
        let _held = match held {
            Some(held) => held,
            None => jar.lock().await?,
        };
        jar.set(server, token)?;
    }
    Ok(())
}

async fn attempt(
    conn: &mut Connection,
    creds: &mut impl Credentials,
    suggested: Option<&str>,
) -> Result<(), ClientError> {
    let AuthRequest {
        register,
        user,
        password,
    } = creds.choose(suggested)?;
    let msg = if register {
        ClientMsg::Register { user, password }
    } else {
        ClientMsg::Login { user, password }
    };
    conn.send(&msg).await
}

/// A non-fatal `error` goes to `creds`; anything else ends the handshake.
fn refusal_or_end(msg: ServerMsg, creds: &mut impl Credentials) -> Result<(), ClientError> {
    match msg {
        ServerMsg::Error {
            code,
            message,
            fatal: false,
            attempts_left,
        } => creds.refused(code, &message, attempts_left),
        ServerMsg::Error { code, message, .. } => Err(ClientError::Refused { code, message }),
        ServerMsg::Bye { reason, cause, .. } => Err(ClientError::Bye(reason, cause)),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(msg: &ServerMsg) -> ClientError {
    use echo_proto::Message;
    ClientError::Protocol(format!("unexpected {} during the handshake", msg.kind()))
}
