//! Identification by IP address (lab task 5): a known address is greeted by
//! name; an unknown one is asked for a name, which is remembered.

use echo_proto::{ClientMsg, ErrorCode, Json, Message, ServerMsg};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::Instant,
};
use tracing::{error, info};

use super::{Ending, Established, Session, State};
use crate::{
    ops::{logging::shown, metrics::Handshake},
    store::{StoreError, UserStore},
};

impl<S: UserStore, T: AsyncRead + AsyncWrite + Unpin> Session<S, T> {
    /// Looks the address up: greets a known one, asks an unknown one.
    pub(super) async fn identify(&mut self, deadline: Instant) -> Result<State, Ending> {
        let known = self.ctx.auth.known_name(self.peer.ip()).await;
        match known.map_err(|err| match err {
            StoreError::Unavailable(_) => Ending::StoreUnavailable,
            err => {
                error!(error = %err, "store failure");
                Ending::Violation {
                    code: ErrorCode::Internal,
                    message: "the server cannot read its user store".into(),
                }
            }
        })? {
            Some(name) => {
                info!(name = %shown(&name), "identified: known address");
                self.greet(name, true).await
            }
            None => {
                self.wire.send(ServerMsg::AskName {}).await?;
                Ok(State::Naming { deadline })
            }
        }
    }

    /// Takes one `name`; a bad one is refused and asked for again.
    pub(super) async fn naming(&mut self, deadline: Instant) -> Result<State, Ending> {
        let name = match self.wire.recv(deadline).await? {
            ClientMsg::Name { name } => name,
            other => return Err(Ending::unexpected(other.kind(), "during identification")),
        };
        match self.ctx.auth.name_address(self.peer.ip(), &name).await {
            Ok(name) => {
                info!(name = %shown(&name), "identified: new address");
                self.greet(name, false).await
            }
            Err(refusal) => {
                let code = super::codes::wire_code(refusal.reason);
                let refused = ServerMsg::error(code, refusal.message, false);
                self.wire
                    .feed([Json(refused), Json(ServerMsg::AskName {})])
                    .await?;
                Ok(State::Naming { deadline })
            }
        }
    }

    async fn greet(&mut self, name: String, known: bool) -> Result<State, Ending> {
        self.ctx.metrics.handshake(Handshake::greeted);
        tracing::Span::current().record("user", tracing::field::display(shown(&name)));
        self.wire
            .send(ServerMsg::Greet {
                name: name.clone(),
                known,
            })
            .await?;
        Ok(State::Echo(Established {
            name,
            chain: None,
            _watch: None,
        }))
    }
}
