//! The reading connections: a fixed set of threads, each owning one
//! read-only connection opened at start, all taking reads from one queue.
//!
//! A read costs one hop to a thread that is already waiting and one back.
//! (A pool of connections lent to the blocking pool, deadpool-sqlite's way,
//! cost two hops and a checking query per read, and let a burst of
//! handshakes start as many blocking threads as were reading at once.)

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
    sync::Arc,
    thread::JoinHandle,
};

use crossbeam_channel::{Receiver, Sender};
use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{Failure, schema};
use crate::store::StoreError;

/// A read, run on one of the reading connections.
type Job = Box<dyn FnOnce(&Connection) + Send>;

/// The reading threads; they end (and are joined) when this is dropped.
pub(super) struct Readers {
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    path: Arc<Path>,
}

impl Readers {
    /// Opens `count` read-only connections to `path`, each on a thread of
    /// its own, and returns once all are open: serving never waits to open
    /// one (nor fails to, when clients have taken every file descriptor).
    pub async fn open(path: &Path, count: usize) -> Result<Self, StoreError> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        let mut readers = Self {
            jobs: Some(jobs),
            threads: Vec::with_capacity(count),
            path: Arc::from(path),
        };
        for index in 0..count {
            let (ready, opened) = oneshot::channel();
            let thread = spawn(path, index, queue.clone(), ready)?;
            readers.threads.push(thread);
            opened.await.map_err(|_| StoreError::Poisoned)??;
        }
        Ok(readers)
    }

    /// Runs `read` on the first free reading connection.
    pub async fn read<R: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<R, Failure> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (answer, answered) = oneshot::channel();
        let path = self.path.clone();
        let job: Job = Box::new(move |connection| {
            let _ = answer.send(read(connection).map_err(|err| err.into_store_error(&path)));
        });
        let jobs = self.jobs.as_ref().ok_or(StoreError::Poisoned)?;
        jobs.send(job).map_err(|_| StoreError::Poisoned)?;
        answered.await.map_err(|_| StoreError::Poisoned)?
    }
}

/// One reading thread: opens its connection, says so, then runs reads
/// until the queue closes. A read that panics loses its answer (its caller
/// hears `Poisoned`), not the thread.
fn spawn(
    path: &Path,
    index: usize,
    queue: Receiver<Job>,
    ready: oneshot::Sender<Result<(), StoreError>>,
) -> Result<JoinHandle<()>, StoreError> {
    let path = path.to_owned();
    std::thread::Builder::new()
        .name(format!("sqlite-reader-{index}"))
        .spawn(move || {
            let connection = match schema::open_reader(&path) {
                Ok(connection) => connection,
                Err(err) => return drop(ready.send(Err(err))),
            };
            let _ = ready.send(Ok(()));
            for job in queue {
                let _ = catch_unwind(AssertUnwindSafe(|| job(&connection)));
            }
        })
        .map_err(|source| StoreError::Io {
            what: "the store's reading threads".into(),
            source,
        })
}

impl Drop for Readers {
    fn drop(&mut self) {
        // A closed queue ends every thread's loop.
        drop(self.jobs.take());
        let current = std::thread::current().id();
        for thread in self.threads.drain(..) {
            if thread.thread().id() != current {
                let _ = thread.join();
            }
        }
    }
}
