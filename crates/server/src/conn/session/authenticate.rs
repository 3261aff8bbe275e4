//! Authentication (lab task 6): `resume` with a token, `login` or `register`
//! with a password, at most [`ATTEMPTS_PER_CONNECTION`] failures per
//! connection. The authenticator decides; this step only speaks.

use echo_proto::{ClientMsg, ErrorCode, Json, Message, ServerMsg};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::Instant,
};

use super::{Ending, Established, Session, State, codes::wire_code};
use crate::{
    auth::{ATTEMPTS_PER_CONNECTION, Grant, Reason, Refusal},
    ops::{logging::shown, metrics::Handshake},
    store::UserStore,
};

/// What protected mode tells a client that sent credentials in the clear.
const TLS_REQUIRED: &str = "this server takes passwords and tokens from other machines only over TLS: \
     connect with --tls if the server has it, or its operator can start it with --tls \
     (or set allow_plaintext_auth = true to accept them in the clear)";

impl<S: UserStore, T: AsyncRead + AsyncWrite + Unpin> Session<S, T> {
    /// Offers the ways in, naming the user last seen from this address
    /// (unless `suggest_user` is off).
    pub(super) async fn authenticate(&mut self, deadline: Instant) -> Result<State, Ending> {
        let suggested_user = if self.ctx.settings.now().auth.suggest_user {
            let known = self.ctx.auth.address_identity(self.peer.ip()).await;
            let name = known.as_ref().map(|known| known.name.clone());
            self.known_here = Some(known);
            name
        } else {
            None
        };
        let ask = ServerMsg::AskAuth { suggested_user };
        self.wire.send(ask.clone()).await?;
        Ok(State::Credentials {
            deadline,
            attempts_left: ATTEMPTS_PER_CONNECTION,
            ask,
        })
    }

    /// Takes one `resume`, `login` or `register` and answers it.
    pub(super) async fn credentials(
        &mut self,
        deadline: Instant,
        attempts_left: u32,
        ask: ServerMsg,
    ) -> Result<State, Ending> {
        let auth = &self.ctx.auth;
        let ip = self.peer.ip();
        let msg = self.wire.recv(deadline).await?;
        if matches!(
            msg,
            ClientMsg::Resume { .. } | ClientMsg::Login { .. } | ClientMsg::Register { .. }
        ) && !self.secure
            && !self.ctx.settings.now().auth.allow_plaintext_auth
            && !ip.to_canonical().is_loopback()
        {
            return Err(Ending::Violation {
                code: ErrorCode::TlsRequired,
                message: TLS_REQUIRED.to_owned(),
            });
        }
        let asked = std::time::Instant::now();
        let (outcome, ask_again, way_in) = match msg {
            ClientMsg::Resume { token } => (auth.resume(&token).await, true, Handshake::resumed),
            ClientMsg::Login { user, password } => (
                auth.login(&user, password, ip).await,
                false,
                Handshake::logged_in,
            ),
            ClientMsg::Register { user, password } => (
                auth.register(&user, password, ip).await,
                false,
                Handshake::registered,
            ),
            other => return Err(Ending::unexpected(other.kind(), "during authentication")),
        };
        let took = asked.elapsed().as_secs_f64();
        self.ctx.metrics.auth_seconds.observe(took);
        let refusal = match outcome {
            Ok(grant) => {
                self.ctx.metrics.handshake(way_in);
                return self.welcome(grant).await;
            }
            Err(refusal) => refusal,
        };
        let again = ask_again.then_some(&ask);
        let attempts_left = self.refused(refusal, attempts_left, again).await?;
        Ok(State::Credentials {
            deadline,
            attempts_left,
            ask,
        })
    }

    /// Tells the client of `refusal` (and asks again with `ask_again`):
    /// the attempts left after it.
    async fn refused(
        &mut self,
        refusal: Refusal,
        mut attempts_left: u32,
        ask_again: Option<&ServerMsg>,
    ) -> Result<u32, Ending> {
        if refusal.reason == Reason::Unavailable {
            return Err(Ending::StoreUnavailable);
        }
        let mut attempts = None;
        if refusal.counts {
            attempts_left -= 1;
            attempts = Some(attempts_left);
        }
        let refused = ServerMsg::Error {
            code: wire_code(refusal.reason),
            message: refusal.message,
            fatal: false,
            attempts_left: attempts,
        };
        if attempts_left == 0 {
            self.wire.send(refused).await?;
            return Err(Ending::TooManyAttempts);
        }
        match ask_again {
            Some(ask) => self.wire.feed([Json(refused), Json(ask.clone())]).await?,
            None => self.wire.send(refused).await?,
        }
        Ok(attempts_left)
    }

    async fn welcome(&mut self, grant: Grant) -> Result<State, Ending> {
        let Grant { token, session } = grant;
        tracing::Span::current().record("user", tracing::field::display(shown(&session.user)));
        // Watched before the client hears of it, so that a revocation from
        // now on (here or on another server) reaches this connection.
        let stopper = self.listed.entry().stopper().clone();
        let watch = self
            .ctx
            .auth
            .live()
            .watch(session.chain, &session.user, stopper);
        self.wire
            .send(ServerMsg::Welcome {
                user: session.user.clone(),
                token,
                expires_at: session.expires,
            })
            .await?;
        // Out now, not after the store write below.
        self.wire.flush().await?;
        let (auth, ip) = (&self.ctx.auth, self.peer.ip());
        match self.known_here.take() {
            Some(known) => auth.remember_user_known(ip, &session.user, known).await,
            None => auth.remember_user(ip, &session.user).await,
        }
        Ok(State::Echo(Established {
            name: session.user,
            chain: Some(session.chain),
            _watch: Some(watch),
        }))
    }
}
