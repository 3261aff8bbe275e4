//! The conversation (lab task 8): every `say` gets one or more replies.
//! Plain text takes the fast path (echoed as the JSON string it came as);
//! a `/command` is parsed and run by `commands.rs`.

use echo_proto::{
    ClientMsg, Message, ServerMsg,
    fast::{CommandSay, RawReply, RawSay},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::Instant,
};
use tracing::{debug, info};

use super::{Ending, Established, Session, State, wire::OutputLimits};
use crate::{
    conn::commands::{Caller, Command},
    ops::logging::{MAX_LOGGED_ERROR, shown_max},
    store::UserStore,
};

impl<S: UserStore, T: AsyncRead + AsyncWrite + Unpin> Session<S, T> {
    /// Answers `say` until the client leaves, logs out or goes quiet.
    /// Takes the established client by reference: an `async fn` keeps
    /// its arguments twice, and the caller has it already (#30).
    pub(super) async fn echo(&mut self, established: &Established) -> Result<State, Ending> {
        self.wire
            .set_max_frame(self.ctx.settings.now().limits.max_frame);
        loop {
            // A reload's limits apply from the next message on.
            let deadline = {
                let settings = self.ctx.settings.now();
                self.wire.set_output_limits(OutputLimits::of(&settings));
                Instant::now() + settings.timeouts.idle
            };
            let payload = self.wire.next_frame(deadline).await?;
            if let Some(say) = RawSay::parse(&payload) {
                debug!(id = say.id, bytes = payload.len(), "echo");
                let reply = RawReply {
                    re: say.id,
                    text: say.text,
                    last: true,
                };
                self.wire.reply(reply).await?;
                self.wire.tally.messages += 1;
                self.wire.tally.replies += 1;
                continue;
            }
            // The other answers are boxed: a `/command` or a `say` off the
            // fast path is rare, and this future is held for as long as the
            // connection lives (#30).
            if let Some(say) = CommandSay::parse(&payload) {
                Box::pin(self.answer(established, say.id, &say.text)).await?;
                continue;
            }
            let Some(msg) = self.wire.decode(&payload).await? else {
                continue;
            };
            match msg {
                ClientMsg::Say { id, text } => {
                    Box::pin(self.answer(established, id, &text)).await?;
                }
                ClientMsg::Logout {} => {
                    if let Some(chain) = established.chain {
                        // A store call, boxed: the conversation's future
                        // is held for as long as the connection lives.
                        Box::pin(self.ctx.auth.logout(chain)).await;
                    }
                    return Err(Ending::Logout);
                }
                other => return Err(Ending::unexpected(other.kind(), "after the handshake")),
            }
        }
    }

    /// Answers one `say` that did not take the fast path: plain text is
    /// echoed in one reply, a `/command` may get several, and a bad command
    /// gets an `error`.
    async fn answer(
        &mut self,
        established: &Established,
        id: u64,
        text: &str,
    ) -> Result<(), Ending> {
        self.wire.tally.messages += 1;
        if !text.starts_with('/') {
            debug!(id, bytes = text.len(), "echo");
            return self.wire.send_replies(id, [text]).await;
        }
        let caller = Caller {
            name: &established.name,
            peer: &self.peer,
            connection: self.id,
            stats: &self.ctx.metrics,
        };
        match Command::parse(text, self.ctx.settings.now().limits.max_repeat) {
            Ok(command) => {
                // `/stats` counts what came before it, itself included.
                self.wire.publish();
                let replies = command.run(&caller);
                self.wire.send_replies(id, replies).await
            }
            Err(err) => {
                let error = err.to_string();
                info!(error = %shown_max(&error, MAX_LOGGED_ERROR), "bad command");
                self.wire
                    .send(ServerMsg::error(err.code(), err.to_string(), false))
                    .await
            }
        }
    }
}
