//! The size of a connection's task (#30): the future the listener spawns
//! is held, whole, for as long as the connection lives, idle or not, so
//! the state only a handshake or the last goodbye needs is boxed and
//! freed when that step is over. Printed for docs/BENCHMARKS.md ("Memory
//! per idle session"); the bounds catch a large state creeping back in
//! (unboxed, the handshake steps alone made the task several KiB).

use std::{future::Future, mem::size_of};

use super::Admitted;
use crate::{
    conn::session::{Session, sizes},
    conn::transport::Stream,
    store::Store,
};

/// The size of the future `f` returns.
fn future_size<A, B, C, F: Future>(_f: impl Fn(A, B, C) -> F) -> usize {
    size_of::<F>()
}

/// Most bytes a connection task's future may take (release and debug
/// builds alike: debug futures are the larger).
const MAX_TASK: usize = 2048;

#[test]
fn a_connection_task_and_its_session_are_small() {
    let task = future_size(Admitted::<Store>::connection);
    let run = future_size(Session::<Store, Stream>::run);
    println!("connection task's future: {task} B");
    println!("Session::run's future: {run} B");
    for (part, bytes) in sizes::parts::<Store>() {
        println!("{part}: {bytes} B");
    }
    assert!(task <= MAX_TASK, "connection task's future: {task} B");
    assert!(run <= task, "the session runs inside the task: {run} B");
}
