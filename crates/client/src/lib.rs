//! The echo-client library: everything the `echo-client` binary does, in
//! pieces a program (or a test) can use on its own.
//!
//! - [`config`]: where to connect: flags, environment, config file, prompts.
//! - [`Connection`]: a connection to a server; frames in on a background
//!   task, frames out through the proto crate's stream extension traits.
//! - [`handshake()`]: following the server through identification or
//!   authentication, with the [`Credentials`] a person or a script supplies.
//! - [`TokenJar`]: the session tokens ("cookies"), one per server, in a file
//!   only its owner can read.
//! - [`tls`]: TLS, and who is trusted: a CA, the system's roots, or the
//!   key recorded in [`known_hosts`] on first use.
//! - [`Conversation`]: a connection and its lines not answered yet, which
//!   carries on across `bye restart` ([`restart`]).
//! - [`ClientError`]: every failure as one sentence, with the exit code the
//!   binary returns for it.

pub mod config;
mod connection;
mod error;
pub mod handshake;
mod jar;
pub mod known_hosts;
pub mod restart;
pub mod tls;

pub use connection::{Connection, Incoming, Target};
pub use error::{ClientError, Source};
pub use handshake::{AuthRequest, Credentials, Established, NoQuestions, handshake};
pub use jar::TokenJar;
pub use restart::{Conversation, Resumed};
