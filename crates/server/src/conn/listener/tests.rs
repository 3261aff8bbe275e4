//! The size of a connection's task (#30): the future the listener spawns
//! is held, whole, for as long as the connection lives, idle or not, so
//! the state only a handshake or the last goodbye needs is boxed and
//! freed when that step is over. Printed for docs/BENCHMARKS.md ("Memory
//! per idle session"); the bounds are loose, to catch a large state
//! creeping back in, not to pin a compiler's layout.

use std::{future::Future, mem::size_of};

use super::Admitted;
use crate::{conn::session::Session, conn::transport::Stream, store::Store};

/// The size of the future `f` returns.
fn future_size<A, B, C, F: Future>(_f: impl Fn(A, B, C) -> F) -> usize {
    size_of::<F>()
}

#[test]
fn a_connection_task_and_its_session_are_small() {
    let task = future_size(Admitted::<Store>::connection);
    let run = future_size(Session::<Store, Stream>::run);
    let session = size_of::<Session<Store, Stream>>();
    println!("connection task {task} B, Session::run {run} B, Session {session} B");
    assert!(task <= 2048, "connection task future: {task} B");
    assert!(run <= 2048, "session future: {run} B");
}

fn size1<A, F: Future>(_f: impl Fn(A) -> F) -> usize {
    size_of::<F>()
}
fn size2<A, B, F: Future>(_f: impl Fn(A, B) -> F) -> usize {
    size_of::<F>()
}

#[test]
fn tmp_sizes() {
    use crate::conn::session::Tmp;
    Tmp::<Store, Stream>::print();
    println!(
        "logout {}",
        size2(crate::auth::Authenticator::<Store>::logout)
    );
    println!(
        "drain {}",
        size1(crate::conn::transport::close_gracefully::<Stream>)
    );
}
