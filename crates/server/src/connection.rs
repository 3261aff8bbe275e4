//! One task per connection: the hello → identify → authenticate → echo state
//! machine, with every read raced against shutdown and a deadline.

use std::{
    fmt, io,
    net::SocketAddr,
    pin::{Pin, pin},
    sync::Arc,
    task::Poll,
    time::Duration,
};

use bytes::BytesMut;
use echo_proto::{
    ByeReason, ClientMsg, ErrorCode, FrameCodec, Json, MAX_FRAME_LENGTH, Message, PROTOCOL_VERSION,
    ProtoError, Secret, ServerMsg, decode_message,
    fast::{RawReply, RawSay},
};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::OwnedSemaphorePermit,
    time::{Instant, sleep_until, timeout},
};
use tokio_util::{
    codec::Framed,
    sync::{CancellationToken, WaitForCancellationFutureOwned},
};
use tracing::{debug, error, info, warn};

use crate::{
    Shared,
    auth::{
        ATTEMPTS_PER_CONNECTION, Limited, MAX_PASSWORD_BYTES, check_password, new_token,
        validate_name,
    },
    commands::{Command, CommandError, format_uptime, help_lines},
    store::{Rotation, SessionInfo, StoreError, TokenHash, UserRecord, UserStore},
};

/// Time allowed for the last frame of a connection (`bye` or a fatal
/// `error`), and then for the client to close its side.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);
/// Most bytes read and thrown away while waiting for the client to close.
const LINGER_MAX_BYTES: usize = 64 * 1024;

/// Initial size of a connection's read buffer: a burst of large messages is
/// taken in one read, not eight. Pages a connection never fills are never
/// touched, so they cost an idle connection no memory (measured: the same
/// 15.3 KiB of RSS per idle connection as with Framed's 8 KiB default).
const READ_BUFFER: usize = 64 * 1024;

/// Longest piece of a client-chosen user name written to the log.
const MAX_LOGGED_NAME: usize = 64;

/// A client connection and everything its handler needs.
pub(crate) struct Connection<S> {
    framed: Framed<TcpStream, FrameCodec>,
    peer: SocketAddr,
    id: uuid::Uuid,
    shared: Arc<Shared<S>>,
    /// Created once and polled by every wait: a connection's own child
    /// token, so waiting does not contend on a lock shared by all.
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
}

/// Where a connection is in its life. Each state carries what it needs, and
/// the handler moves from one to the next by value.
enum State {
    /// Identification mode: find out the client's name from its IP.
    Identify,
    /// Authentication mode: wait for `resume`, `login` or `register`.
    Authenticate,
    /// Established: answer `say` until the client leaves.
    Echo(Session),
}

/// What is known about an established client.
struct Session {
    /// The identified or authenticated name.
    name: String,
    /// The session chain, in authentication mode (revoked by `logout`).
    family: Option<uuid::Uuid>,
}

/// A successful `resume`, `login` or `register`.
struct Granted {
    token: Secret,
    info: SessionInfo,
}

/// A refused authentication attempt: the `error` frame to send.
struct Refusal {
    code: ErrorCode,
    message: String,
    /// Whether it uses up one of the connection's attempts.
    counts: bool,
}

/// How a connection ends; decides the last frame sent and the log line.
#[derive(Debug)]
enum Ending {
    /// The client closed the connection between frames.
    ClientLeft,
    /// The connection broke: a reset, or an end in the middle of a frame.
    Lost(io::Error),
    /// A write did not finish in time (the client stopped reading).
    WriteTimedOut,
    /// The handshake or idle deadline passed: `bye {timeout}`.
    Timeout,
    /// The server is shutting down: `bye {shutdown}`.
    Shutdown,
    /// The client logged out: `bye {logout}`.
    Logout,
    /// Too many failed attempts: `bye {too_many_attempts}`.
    TooManyAttempts,
    /// A protocol violation: a fatal `error` frame.
    Violation { code: ErrorCode, message: String },
}

impl<S: UserStore> Connection<S> {
    pub(crate) fn new(
        stream: TcpStream,
        peer: SocketAddr,
        id: uuid::Uuid,
        shared: Arc<Shared<S>>,
        shutdown: CancellationToken,
    ) -> Self {
        let codec = FrameCodec::with_limits(shared.config.max_frame_handshake, MAX_FRAME_LENGTH);
        Self {
            framed: Framed::with_capacity(stream, codec, READ_BUFFER),
            peer,
            id,
            shared,
            shutdown: Box::pin(shutdown.cancelled_owned()),
        }
    }

    /// Serves the connection to its end. The permit is held until then, so
    /// the connection limit cannot leak on any path.
    pub(crate) async fn run(mut self, _permit: OwnedSemaphorePermit) {
        let _counted = self.shared.stats.connection();
        info!("connected");
        let ending = self.drive().await;
        self.finish(ending).await;
    }

    async fn drive(&mut self) -> Ending {
        let hello = hello(&self.shared);
        if let Err(ending) = self.send(hello).await {
            return ending;
        }
        let deadline = Instant::now() + self.shared.config.handshake_timeout;
        let mut state = match self.shared.config.mode {
            echo_proto::Mode::Ident => State::Identify,
            echo_proto::Mode::Auth => State::Authenticate,
        };
        loop {
            info!(state = state.name(), "state");
            let next = match state {
                State::Identify => self.identify(deadline).await,
                State::Authenticate => self.authenticate(deadline).await,
                State::Echo(session) => self.echo(session).await,
            };
            state = match next {
                Ok(next) => next,
                Err(ending) => return ending,
            };
        }
    }

    /// Identification by IP address (lab task 5): a known address is greeted
    /// by name, an unknown one is asked for a name, which is remembered.
    async fn identify(&mut self, deadline: Instant) -> Result<State, Ending> {
        let ip = self.peer.ip();
        let now = self.shared.clock.now();
        let known = self.shared.store.identity(ip).await.map_err(store_failed)?;
        if let Some(name) = known {
            if let Err(err) = self.shared.store.remember_identity(ip, &name, now).await {
                warn!(error = %err, "cannot record when this address was last seen");
            }
            info!(name = %name, "identified: known address");
            return self.greet(name, true).await;
        }
        self.send(ServerMsg::AskName {}).await?;
        loop {
            let name = match self.recv(deadline).await? {
                ClientMsg::Name { name } => name,
                other => return Err(unexpected(&other, "during identification")),
            };
            let refusal = match validate_name(&name) {
                Ok(name) => match self.shared.store.remember_identity(ip, &name, now).await {
                    Ok(()) => {
                        info!(name = %name, "identified: new address");
                        return self.greet(name, false).await;
                    }
                    Err(err) => {
                        error!(error = %err, "cannot store a name");
                        error_msg(
                            ErrorCode::Internal,
                            "the server could not save the name; try again".into(),
                            false,
                        )
                    }
                },
                Err(reason) => error_msg(ErrorCode::InvalidName, reason, false),
            };
            self.send_all([refusal, ServerMsg::AskName {}]).await?;
        }
    }

    async fn greet(&mut self, name: String, known: bool) -> Result<State, Ending> {
        tracing::Span::current().record("user", name.as_str());
        self.send(ServerMsg::Greet {
            name: name.clone(),
            known,
        })
        .await?;
        Ok(State::Echo(Session { name, family: None }))
    }

    /// Authentication (lab task 6): `resume` with a token, `login` or
    /// `register` with a password, at most five failures per connection.
    async fn authenticate(&mut self, deadline: Instant) -> Result<State, Ending> {
        let ip = self.peer.ip();
        let suggested_user = match self.shared.store.identity(ip).await {
            Ok(name) => name,
            Err(err) => {
                warn!(error = %err, "cannot look up this address");
                None
            }
        };
        let ask = ServerMsg::AskAuth { suggested_user };
        self.send(ask.clone()).await?;
        let mut attempts_left = ATTEMPTS_PER_CONNECTION;
        loop {
            let (outcome, ask_again) = match self.recv(deadline).await? {
                ClientMsg::Resume { token } => (self.resume(&token).await, true),
                ClientMsg::Login { user, password } => (self.login(&user, password).await, false),
                ClientMsg::Register { user, password } => {
                    (self.register(&user, password).await, false)
                }
                other => return Err(unexpected(&other, "during authentication")),
            };
            let refusal = match outcome {
                Ok(granted) => return self.welcome(granted).await,
                Err(refusal) => refusal,
            };
            let mut attempts = None;
            if refusal.counts {
                attempts_left -= 1;
                attempts = Some(attempts_left);
            }
            let mut frames = vec![ServerMsg::Error {
                code: refusal.code,
                message: refusal.message,
                fatal: false,
                attempts_left: attempts,
            }];
            if attempts_left == 0 {
                self.send_all(frames).await?;
                return Err(Ending::TooManyAttempts);
            }
            if ask_again {
                frames.push(ask.clone());
            }
            self.send_all(frames).await?;
        }
    }

    async fn welcome(&mut self, granted: Granted) -> Result<State, Ending> {
        let Granted { token, info } = granted;
        let now = self.shared.clock.now();
        tracing::Span::current().record("user", info.user.as_str());
        self.send(ServerMsg::Welcome {
            user: info.user.clone(),
            token,
            expires_at: info.expires,
        })
        .await?;
        // Out now, not after the store write below.
        self.flush().await?;
        // The next connection from this address is offered this user.
        let ip = self.peer.ip();
        if let Err(err) = self
            .shared
            .store
            .remember_identity(ip, &info.user, now)
            .await
        {
            warn!(error = %err, "cannot remember the user for this address");
        }
        Ok(State::Echo(Session {
            name: info.user,
            family: Some(info.family),
        }))
    }

    async fn resume(&self, token: &Secret) -> Result<Granted, Refusal> {
        let now = self.shared.clock.now();
        let next = new_token();
        let rotation = self
            .shared
            .store
            .rotate_session(
                TokenHash::of(token.expose()),
                TokenHash::of(next.expose()),
                now,
            )
            .await
            .map_err(refused_by_store)?;
        match rotation {
            Rotation::Rotated(info) => {
                info!(user = %info.user, family = %info.family, "session resumed; token rotated");
                Ok(Granted { token: next, info })
            }
            Rotation::Reused { user, family } => {
                warn!(user = %user, %family, "a rotated-away token was presented: session chain revoked");
                Err(token_invalid())
            }
            Rotation::Expired { user } => {
                info!(user = %user, "resume refused: session expired");
                Err(token_invalid())
            }
            Rotation::Unknown => {
                info!("resume refused: unknown token");
                Err(token_invalid())
            }
        }
    }

    async fn login(&self, user: &str, password: Secret) -> Result<Granted, Refusal> {
        let shared = &self.shared;
        let now = shared.clock.now();
        let user = user.trim();
        let shown = shown_name(user);
        shared
            .limits
            .check_address(self.peer.ip(), now)
            .map_err(rate_limited)?;
        shared.limits.check_account(user, now).map_err(|limit| {
            warn!(user = %shown, "login refused: account is backing off");
            rate_limited(limit)
        })?;
        let hash = if password.expose().len() > MAX_PASSWORD_BYTES {
            None
        } else {
            let record = shared.store.user(user).await.map_err(refused_by_store)?;
            record.map(|record| record.password_hash)
        };
        let matches = shared
            .passwords
            .verify(password, hash)
            .await
            .map_err(|err| {
                error!(error = %err, "password check failed");
                internal()
            })?;
        if !matches {
            shared.limits.record_failure(user, now);
            warn!(user = %shown, "login failed");
            return Err(Refusal {
                code: ErrorCode::InvalidCredentials,
                message: "wrong user name or password".into(),
                counts: true,
            });
        }
        shared.limits.record_success(user);
        let granted = self.open_session(user, now).await?;
        info!(user = %shown, "logged in");
        Ok(granted)
    }

    async fn register(&self, user: &str, password: Secret) -> Result<Granted, Refusal> {
        let shared = &self.shared;
        let now = shared.clock.now();
        let name = validate_name(user).map_err(|reason| Refusal {
            code: ErrorCode::InvalidName,
            message: reason,
            counts: false,
        })?;
        check_password(&name, password.expose(), shared.config.min_password_length).map_err(
            |reason| Refusal {
                code: ErrorCode::WeakPassword,
                message: reason,
                counts: false,
            },
        )?;
        shared
            .limits
            .check_address(self.peer.ip(), now)
            .map_err(rate_limited)?;
        let taken = || Refusal {
            code: ErrorCode::NameTaken,
            message: format!("the user name {name:?} is taken"),
            counts: false,
        };
        if shared
            .store
            .user(&name)
            .await
            .map_err(refused_by_store)?
            .is_some()
        {
            return Err(taken());
        }
        let password_hash = shared.passwords.hash(password).await.map_err(|err| {
            error!(error = %err, "password hashing failed");
            internal()
        })?;
        let record = UserRecord {
            name: name.clone(),
            password_hash,
            created: now,
        };
        let token = new_token();
        match shared
            .store
            .register(record, TokenHash::of(token.expose()))
            .await
        {
            Ok(info) => {
                info!(user = %name, "registered");
                Ok(Granted { token, info })
            }
            Err(StoreError::NameTaken(_)) => Err(taken()),
            Err(err) => Err(refused_by_store(err)),
        }
    }

    async fn open_session(&self, user: &str, now: u64) -> Result<Granted, Refusal> {
        let token = new_token();
        let info = self
            .shared
            .store
            .create_session(TokenHash::of(token.expose()), user, now)
            .await
            .map_err(refused_by_store)?;
        Ok(Granted { token, info })
    }

    /// The conversation (lab task 8): every `say` gets one or more replies.
    async fn echo(&mut self, session: Session) -> Result<State, Ending> {
        let max_frame = self.shared.config.max_frame;
        self.framed.codec_mut().set_max_frame_length(max_frame);
        loop {
            let deadline = Instant::now() + self.shared.config.idle_timeout;
            let payload = self.next_frame(deadline).await?;
            if let Some(say) = RawSay::parse(&payload) {
                self.shared.stats.message_served();
                let reply = RawReply {
                    re: say.id,
                    text: say.text,
                    last: true,
                };
                self.feed([reply]).await?;
                continue;
            }
            let Some(msg) = self.decode(&payload).await? else {
                continue;
            };
            match msg {
                ClientMsg::Say { id, text } => self.answer(&session, id, text).await?,
                ClientMsg::Logout {} => {
                    if let Some(family) = session.family {
                        match self.shared.store.revoke_session(family).await {
                            Ok(_) => info!(%family, "logged out: session revoked"),
                            Err(err) => error!(error = %err, "logout: cannot revoke the session"),
                        }
                    }
                    return Err(Ending::Logout);
                }
                other => return Err(unexpected(&other, "after the handshake")),
            }
        }
    }

    /// Answers one `say`: plain text is echoed in one reply, a `/command`
    /// may get several, and a bad command gets an `error`.
    async fn answer(&mut self, session: &Session, id: u64, text: String) -> Result<(), Ending> {
        self.shared.stats.message_served();
        if !text.starts_with('/') {
            debug!(id, bytes = text.len(), "echo");
            return self.send_replies(id, [text]).await;
        }
        let max_repeat = self.shared.config.max_repeat;
        match Command::parse(&text, max_repeat) {
            Ok(Command::Help) => self.send_replies(id, help_lines()).await,
            Ok(Command::Whoami) => {
                let line = self.whoami(session);
                self.send_replies(id, [line]).await
            }
            Ok(Command::Stats) => {
                let lines = self.stats_lines();
                self.send_replies(id, lines).await
            }
            Ok(Command::Repeat { count, text }) => {
                let text = text.to_owned();
                let replies = (0..count).map(|_| text.clone());
                self.send_replies(id, replies).await
            }
            Err(err) => {
                let code = match err {
                    CommandError::Unknown(_) => ErrorCode::UnknownCommand,
                    CommandError::Bad(_) => ErrorCode::BadCommand,
                };
                debug!(error = %err, "bad command");
                self.send(error_msg(code, err.to_string(), false)).await
            }
        }
    }

    fn whoami(&self, session: &Session) -> String {
        let name = &session.name;
        format!(
            "you are {name}, connected from {} (connection {})",
            self.peer, self.id
        )
    }

    fn stats_lines(&self) -> Vec<String> {
        let stats = &self.shared.stats;
        vec![
            format!("uptime: {}", format_uptime(stats.uptime())),
            format!(
                "connections now: {} (since start: {})",
                stats.connections_now(),
                stats.connections_total()
            ),
            format!("messages served: {}", stats.messages_served()),
        ]
    }

    /// Reads the next message, racing shutdown and `deadline`. A payload
    /// that is not a valid message gets a non-fatal `error` and the wait
    /// goes on; anything that breaks the stream ends the connection.
    async fn recv(&mut self, deadline: Instant) -> Result<ClientMsg, Ending> {
        loop {
            let payload = self.next_frame(deadline).await?;
            if let Some(msg) = self.decode(&payload).await? {
                return Ok(msg);
            }
        }
    }

    /// Parses a payload; a bad one is answered with a non-fatal `error`.
    async fn decode(&mut self, payload: &[u8]) -> Result<Option<ClientMsg>, Ending> {
        match decode_message::<ClientMsg>(payload) {
            Ok(msg) => {
                debug!(kind = msg.kind(), "received");
                Ok(Some(msg))
            }
            Err(err) => {
                warn!(error = %err, "bad request");
                self.send(error_msg(err.code(), err.to_string(), false))
                    .await?;
                Ok(None)
            }
        }
    }

    /// The next frame. One already received (the client sends several
    /// before reading) is taken at once, and the replies written so far stay
    /// buffered, to leave in one write; only before waiting for the network
    /// are they flushed. The wait races shutdown and `deadline`.
    async fn next_frame(&mut self, deadline: Instant) -> Result<BytesMut, Ending> {
        let framed = &mut self.framed;
        let ready = std::future::poll_fn(|cx| Poll::Ready(framed.poll_next_unpin(cx))).await;
        let frame = match ready {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                self.flush().await?;
                tokio::select! {
                    biased;
                    () = self.shutdown.as_mut() => return Err(Ending::Shutdown),
                    () = sleep_until(deadline) => return Err(Ending::Timeout),
                    frame = self.framed.next() => frame,
                }
            }
        };
        match frame {
            None => Err(Ending::ClientLeft),
            Some(Ok(payload)) => Ok(payload),
            Some(Err(ProtoError::Io(err))) => Err(Ending::Lost(err)),
            Some(Err(err)) => Err(Ending::Violation {
                code: err.code(),
                message: err.to_string(),
            }),
        }
    }

    async fn send(&mut self, msg: ServerMsg) -> Result<(), Ending> {
        self.send_all([msg]).await
    }

    async fn send_replies(
        &mut self,
        re: u64,
        texts: impl IntoIterator<Item = String>,
    ) -> Result<(), Ending> {
        let mut texts = texts.into_iter().peekable();
        let mut replies = Vec::new();
        while let Some(text) = texts.next() {
            let last = texts.peek().is_none();
            replies.push(ServerMsg::Reply { re, text, last });
        }
        self.send_all(replies).await
    }

    /// Queues messages for the client. They leave at the next flush (before
    /// the connection waits for input), or earlier when the buffer passes
    /// its backpressure boundary, so a long burst does not pile up in memory.
    async fn send_all(&mut self, msgs: impl IntoIterator<Item = ServerMsg>) -> Result<(), Ending> {
        self.feed(msgs).await
    }

    async fn feed<T: Serialize>(
        &mut self,
        msgs: impl IntoIterator<Item = T>,
    ) -> Result<(), Ending> {
        let limit = self.shared.config.write_timeout;
        let framed = &mut self.framed;
        let write = async move {
            for msg in msgs {
                framed.feed(Json(&msg)).await?;
            }
            Ok(())
        };
        match bounded(write, limit, self.shutdown.as_mut()).await? {
            Ok(()) => Ok(()),
            Err(ProtoError::Io(err)) => Err(Ending::Lost(err)),
            Err(err) => {
                // Only an encoding error is left: a reply over the frame cap.
                // The buffer holds no partial frame, so say so and go on.
                warn!(error = %err, "reply not sent");
                let msg = error_msg(err.code(), err.to_string(), false);
                let framed = &mut self.framed;
                match bounded(framed.feed(Json(&msg)), limit, self.shutdown.as_mut()).await? {
                    Ok(()) => Ok(()),
                    Err(_) => Err(Ending::WriteTimedOut),
                }
            }
        }
    }

    /// Writes out everything queued.
    async fn flush(&mut self) -> Result<(), Ending> {
        let limit = self.shared.config.write_timeout;
        let flush = SinkExt::<Json<&ServerMsg>>::flush(&mut self.framed);
        match bounded(flush, limit, self.shutdown.as_mut()).await? {
            Ok(()) => Ok(()),
            Err(ProtoError::Io(err)) => Err(Ending::Lost(err)),
            Err(_) => Err(Ending::WriteTimedOut),
        }
    }

    /// Sends the last frame the ending calls for, closes our side, and
    /// waits briefly for the client to close theirs, so that the last frame
    /// is not lost to a reset.
    async fn finish(self, ending: Ending) {
        let farewell = match &ending {
            Ending::Timeout => Some(ServerMsg::Bye {
                reason: ByeReason::Timeout,
            }),
            Ending::Shutdown => Some(ServerMsg::Bye {
                reason: ByeReason::Shutdown,
            }),
            Ending::Logout => Some(ServerMsg::Bye {
                reason: ByeReason::Logout,
            }),
            Ending::TooManyAttempts => Some(ServerMsg::Bye {
                reason: ByeReason::TooManyAttempts,
            }),
            Ending::Violation { code, message } => Some(error_msg(*code, message.clone(), true)),
            Ending::ClientLeft | Ending::Lost(_) | Ending::WriteTimedOut => None,
        };
        match &ending {
            Ending::ClientLeft | Ending::Logout | Ending::Shutdown => {
                info!(reason = %ending, "disconnected")
            }
            _ => warn!(reason = %ending, "disconnected"),
        }
        let mut framed = self.framed;
        if let Some(msg) = farewell {
            let _ = timeout(FAREWELL_TIMEOUT, framed.send(Json(&msg))).await;
            close_gracefully(framed.into_inner()).await;
        }
    }
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Identify => "identify",
            State::Authenticate => "authenticate",
            State::Echo(_) => "echo",
        }
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::ClientLeft => f.write_str("client closed the connection"),
            Ending::Lost(err) => write!(f, "connection lost: {err}"),
            Ending::WriteTimedOut => f.write_str("client stopped reading (write timed out)"),
            Ending::Timeout => f.write_str("timed out"),
            Ending::Shutdown => f.write_str("server shutting down"),
            Ending::Logout => f.write_str("logged out"),
            Ending::TooManyAttempts => f.write_str("too many failed attempts"),
            Ending::Violation { code, message } => {
                write!(f, "protocol violation ({code:?}): {message}")
            }
        }
    }
}

/// The first frame of every connection.
pub(crate) fn hello<S>(shared: &Shared<S>) -> ServerMsg {
    ServerMsg::Hello {
        server: concat!("echo-server ", env!("CARGO_PKG_VERSION")).to_owned(),
        proto: PROTOCOL_VERSION,
        mode: shared.config.mode,
    }
}

/// Runs a write. It almost always completes at its first poll, and then
/// costs no timer; only a write that has to wait (the client is not reading)
/// is bounded by `limit` and raced against shutdown.
async fn bounded<T>(
    write: impl Future<Output = T>,
    limit: Duration,
    shutdown: Pin<&mut WaitForCancellationFutureOwned>,
) -> Result<T, Ending> {
    let mut write = pin!(write);
    if let Poll::Ready(done) = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await
    {
        return Ok(done);
    }
    tokio::select! {
        biased;
        () = shutdown => Err(Ending::Shutdown),
        done = timeout(limit, write) => done.map_err(|_| Ending::WriteTimedOut),
    }
}

/// A valid message at the wrong time: a fatal protocol violation.
fn unexpected(msg: &ClientMsg, when: &str) -> Ending {
    Ending::Violation {
        code: ErrorCode::UnexpectedMessage,
        message: format!("{} is not allowed {when}", msg.kind()),
    }
}

/// The store failed while the connection needs it: say so and close.
fn store_failed(err: StoreError) -> Ending {
    error!(error = %err, "store failure");
    Ending::Violation {
        code: ErrorCode::Internal,
        message: "the server cannot reach its user store".into(),
    }
}

fn refused_by_store(err: StoreError) -> Refusal {
    error!(error = %err, "store failure");
    internal()
}

fn internal() -> Refusal {
    Refusal {
        code: ErrorCode::Internal,
        message: "the server failed; nothing was changed, try again".into(),
        counts: false,
    }
}

fn token_invalid() -> Refusal {
    Refusal {
        code: ErrorCode::TokenInvalid,
        message: "the session token is unknown, expired or revoked; log in with your password"
            .into(),
        counts: true,
    }
}

fn rate_limited(limit: Limited) -> Refusal {
    Refusal {
        code: ErrorCode::RateLimited,
        message: format!("too many attempts; try again in {} s", limit.retry_after),
        counts: true,
    }
}

/// A client-chosen name, cut short for the log.
fn shown_name(name: &str) -> String {
    name.chars().take(MAX_LOGGED_NAME).collect()
}

/// An `error` frame.
pub(crate) fn error_msg(code: ErrorCode, message: String, fatal: bool) -> ServerMsg {
    ServerMsg::Error {
        code,
        message,
        fatal,
        attempts_left: None,
    }
}

/// Closes our side and reads (and drops) what the client still sends until
/// it closes too, for a short while. Closing with unread data makes the
/// kernel send a reset, which can destroy the frames we just wrote.
pub(crate) async fn close_gracefully(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < LINGER_MAX_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = timeout(FAREWELL_TIMEOUT, drain).await;
}
