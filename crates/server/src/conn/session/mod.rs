//! One session per connection: the hello → identify or authenticate → echo
//! state machine (lab tasks 5, 6 and 8), over any stream the transport step
//! prepared. Each state is an enum variant carrying its own data (the
//! handshake deadline, the attempts left), moved from step to step by value;
//! one file per state holds its step:
//!
//! - `identify.rs`: [`State::Identify`] and [`State::Naming`];
//! - `authenticate.rs`: [`State::Authenticate`] and [`State::Credentials`];
//! - `echo.rs`: [`State::Echo`], the conversation.
//!
//! `wire.rs` reads and writes the frames; `ending.rs` says how it ends.
//! Decisions about names, passwords and tokens are the authenticator's.

mod authenticate;
mod codes;
mod echo;
mod ending;
mod identify;
#[cfg(test)]
pub(crate) mod sizes;
mod tally;
mod wire;

use std::sync::{Arc, atomic::Ordering};

use echo_proto::{Mode, PROTOCOL_VERSION, ServerMsg};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::OwnedSemaphorePermit,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::{
    conn::admission::SourceSlot,
    conn::context::Context,
    live::clients::Registered,
    live::sessions::Watch,
    ops::metrics::Handshake,
    store::Identity,
    store::UserStore,
    sys::peer::{ConnectionId, Peer},
};
pub(crate) use ending::Ending;
use wire::{OutputLimits, Wire};

/// `retry_after_ms` of `bye {restart}`: none, as the new process is
/// already accepting on the same socket when the old one says it. Clients
/// leave at different moments anyway: each when it is between messages.
const RESTART_RETRY_AFTER_MS: u64 = 0;

/// A client's session: its frames, who it is, and what the server shares.
pub(crate) struct Session<S, T> {
    wire: Wire<T>,
    peer: Peer,
    /// Whether the connection is TLS (protected mode needs to know).
    secure: bool,
    /// The connection's place in its source's limits.
    slot: SourceSlot,
    /// The connection's line in `echo-server clients`.
    listed: Registered,
    id: ConnectionId,
    ctx: Arc<Context<S>>,
    /// What the store knew of this address when `ask_auth` was sent, if it
    /// was asked: after `welcome` it need not be asked again.
    known_here: Option<Option<Identity>>,
}

/// Where a session is. The handshake states carry the deadline by which it
/// must be over.
enum State {
    /// Identification mode: look the client's address up (lab task 5).
    Identify { deadline: Instant },
    /// The address was unknown: waiting for a `name`.
    Naming { deadline: Instant },
    /// Authentication mode: offer `resume`, `login` or `register`.
    Authenticate { deadline: Instant },
    /// Waiting for credentials; `ask` is sent again after a failed `resume`.
    Credentials {
        deadline: Instant,
        attempts_left: u32,
        ask: ServerMsg,
    },
    /// Established: answer `say` until the client leaves.
    Echo(Established),
}

/// What is known about an established client.
struct Established {
    /// The identified or authenticated name.
    name: String,
    /// The session chain, in authentication mode (revoked by `logout`).
    chain: Option<Uuid>,
    /// The connection's place among the live sessions, while it lasts.
    _watch: Option<Watch>,
}

impl<S: UserStore, T: AsyncRead + AsyncWrite + Unpin> Session<S, T> {
    /// A session over a prepared stream.
    pub(crate) fn new(
        stream: T,
        peer: Peer,
        secure: bool,
        id: ConnectionId,
        ctx: Arc<Context<S>>,
        shutdown: CancellationToken,
        slot: SourceSlot,
    ) -> Self {
        let config = ctx.settings.now();
        let limits = OutputLimits::of(&config);
        let metrics = Arc::clone(&ctx.metrics);
        let max_frame = config.limits.max_frame_handshake;
        drop(config);
        let now = ctx.auth.clock().now();
        let listed = ctx.clients.register(id, peer, now, &shutdown);
        let mut wire = Wire::new(stream, shutdown, max_frame, limits, metrics);
        wire.listed_in(Arc::clone(listed.entry()));
        wire.finish_writes_when(Arc::clone(&ctx.restarting));
        Self {
            wire,
            peer,
            secure,
            slot,
            listed,
            id,
            ctx,
            known_here: None,
        }
    }

    /// Serves the session to its end, and gives the stream back if the
    /// client was sent a last frame and should be let go gracefully. The
    /// permit is held until then, so the connection limit cannot leak on any
    /// path.
    ///
    /// Not an `async fn`: its arguments would be stored twice in the
    /// future (as arguments, and as the locals they are moved into), and
    /// the session is most of it; an `async` block uses what it captured
    /// where it lies (#30).
    pub(crate) fn run(
        self,
        deadline: Instant,
        permit: OwnedSemaphorePermit,
    ) -> impl Future<Output = Option<T>> {
        let mut session = self;
        async move {
            let _counted = session.ctx.metrics.connection();
            let started = std::time::Instant::now();
            // Lab task 1: the log shows each client coming and going.
            info!("connected");
            let ending = session.drive(deadline).await;
            // Boxed, as the handshake steps are: only the last moments
            // need the goodbye's state, and the session's future is held
            // whole for as long as the connection lives (#30).
            let stream = Box::pin(session.end(ending, started)).await;
            drop(permit);
            stream
        }
    }

    /// Says goodbye as `ending` asks, logs the connection's line, and gives
    /// the stream back if the client should be let go gracefully.
    async fn end(self, ending: Ending, started: std::time::Instant) -> Option<T> {
        let ending = match ending {
            Ending::Shutdown if self.ctx.restarting.load(Ordering::Acquire) => Ending::Restart {
                retry_after_ms: RESTART_RETRY_AFTER_MS,
            },
            other => other,
        };
        let last = ending.farewell();
        let said_goodbye = ending.lets_go_gracefully();
        let (stream, totals) = self.wire.finish(last, said_goodbye).await;
        // One line per connection, with what it did.
        let duration_ms = started.elapsed().as_millis() as u64;
        let (bytes_in, bytes_out, messages) = (totals.bytes_in, totals.bytes_out, totals.messages);
        if ending.is_ordinary() {
            info!(reason = %ending, duration_ms, messages, bytes_in, bytes_out, "disconnected");
        } else {
            warn!(reason = %ending, duration_ms, messages, bytes_in, bytes_out, "disconnected");
        }
        said_goodbye.then_some(stream)
    }

    async fn drive(&mut self, deadline: Instant) -> Ending {
        if let Err(ending) = self.wire.send(hello(self.ctx.settings.now().mode)).await {
            return ending;
        }
        let mut state = match self.ctx.settings.now().mode {
            Mode::Ident => State::Identify { deadline },
            Mode::Auth => State::Authenticate { deadline },
        };
        loop {
            if let Some(name) = state.entered() {
                debug!(state = name, "state");
            }
            // Successful handshakes are counted where they succeed.
            let in_handshake = !matches!(state, State::Echo(_));
            // The handshake steps are boxed: their futures (store calls,
            // password checks) are large, and the session's future, held
            // for as long as the connection lives, is as large as its
            // largest step; boxed, they are freed once the handshake is
            // over (#30).
            let next = match state {
                State::Identify { deadline } => Box::pin(self.identify(deadline)).await,
                State::Naming { deadline } => Box::pin(self.naming(deadline)).await,
                State::Authenticate { deadline } => Box::pin(self.authenticate(deadline)).await,
                State::Credentials {
                    deadline,
                    attempts_left,
                    ask,
                } => Box::pin(self.credentials(deadline, attempts_left, ask)).await,
                State::Echo(established) => {
                    self.slot.handshake_done();
                    self.listed.entry().established(&established.name);
                    self.echo(&established).await
                }
            };
            state = match next {
                Ok(next) => next,
                Err(ending) => {
                    if in_handshake {
                        let outcome = match ending {
                            Ending::Timeout => Handshake::timeout,
                            // A port probe or a TCP health check.
                            Ending::ClientLeft | Ending::Lost(_) if self.wire.bytes_read() == 0 => {
                                Handshake::silent
                            }
                            _ => Handshake::failed,
                        };
                        self.ctx.metrics.handshake(outcome);
                    }
                    return ending;
                }
            };
        }
    }
}

impl State {
    /// The name logged when the session enters one of the three stages.
    fn entered(&self) -> Option<&'static str> {
        match self {
            State::Identify { .. } => Some("identify"),
            State::Authenticate { .. } => Some("authenticate"),
            State::Echo(_) => Some("echo"),
            State::Naming { .. } | State::Credentials { .. } => None,
        }
    }
}

/// The first frame of every connection.
pub(crate) fn hello(mode: Mode) -> ServerMsg {
    ServerMsg::Hello {
        server: concat!("echo-server ", env!("CARGO_PKG_VERSION")).to_owned(),
        proto: PROTOCOL_VERSION,
        mode,
    }
}
