//! The wire format of echo-server, shared by the server, the client and the
//! benchmark tool.
//!
//! What is in this crate:
//!
//! - [`header`]: the one implementation of the 4-byte big-endian length
//!   header that every other part uses (the lab's task 7).
//! - [`FrameCodec`]: a `tokio_util::codec` decoder/encoder for length-prefixed
//!   frames, with a maximum frame length checked before anything is allocated.
//! - [`ClientMsg`] / [`ServerMsg`]: protocol v1, one JSON object per frame,
//!   tagged by its `"type"` field, and [`decode_message`], which turns a bad
//!   payload into a typed [`ProtoError`] that maps to a wire [`ErrorCode`].
//! - [`fast`]: the server's echo fast path, a `say` echoed without
//!   unescaping and re-escaping its text.
//! - [`ext`]: extension traits that give any async stream (and, blocking,
//!   `std::net::TcpStream`) `send_text` / `recv_text` / `send_msg` /
//!   `recv_msg`: the lab's "extend the socket class" extra credit.
//!
//! What is not: no sockets are opened and no connection state is kept here;
//! the codec itself never touches I/O. `docs/PROTOCOL.md` at the top of the
//! repository is the specification this crate implements.

mod codec;
mod error;
pub mod ext;
pub mod fast;
pub mod header;
mod message;
mod secret;

pub use codec::{FrameCodec, Json};
pub use error::{ErrorCode, ProtoError};
pub use header::{DEFAULT_MAX_FRAME_LENGTH, HEADER_LEN, MAX_FRAME_LENGTH};
pub use message::{
    ByeCause, ByeReason, ClientMsg, DEFAULT_HOST, DEFAULT_PORT, Message, Mode, PROTOCOL_VERSION,
    ServerMsg, decode_message, decode_text,
};
pub use secret::Secret;
