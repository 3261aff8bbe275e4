//! The sizes of a session's parts over the server's own stream type, for
//! the size test of a connection's task (`conn/listener/tests.rs`, #30):
//! a future is as large as the largest state it can be in, and the task
//! holds it whole for as long as the connection lives.

use std::{future::Future, mem::size_of};

use echo_proto::fast::RawReply;
use tokio::time::Instant;

use super::{Established, Session, State, wire::Wire};
use crate::{conn::transport::Stream, store::UserStore};

fn future_size<A, B, F: Future>(_f: impl Fn(A, B) -> F) -> usize {
    size_of::<F>()
}

fn future_size3<A, B, C, F: Future>(_f: impl Fn(A, B, C) -> F) -> usize {
    size_of::<F>()
}

/// (part, bytes) for a session over [`Stream`] with store `S`.
pub(crate) fn parts<S: UserStore>() -> Vec<(&'static str, usize)> {
    vec![
        ("Session", size_of::<Session<S, Stream>>()),
        (
            "  Wire (frames, timer, stop token)",
            size_of::<Wire<Stream>>(),
        ),
        ("  Stream (plain TCP or boxed TLS)", size_of::<Stream>()),
        ("State", size_of::<State>()),
        ("Established", size_of::<Established>()),
        (
            "Session::drive's future",
            future_size(Session::<S, Stream>::drive),
        ),
        (
            "  Session::echo's future",
            future_size::<&mut Session<S, Stream>, &Established, _>(Session::<S, Stream>::echo),
        ),
        (
            "  Wire::next_frame's future",
            future_size::<&mut Wire<Stream>, Instant, _>(Wire::<Stream>::next_frame),
        ),
        (
            "  Wire::reply's future",
            future_size::<&mut Wire<Stream>, RawReply<'_>, _>(Wire::<Stream>::reply),
        ),
        (
            "  Wire::decode's future",
            future_size::<&mut Wire<Stream>, &[u8], _>(Wire::<Stream>::decode),
        ),
        (
            "Wire::finish's future",
            future_size3(Wire::<Stream>::finish),
        ),
    ]
}
