//! The one writer: a thread that owns the writing connection. Changes
//! arrive on a channel; the writer takes every change waiting at that
//! moment (up to [`MAX_BATCH`]), runs each in a savepoint of one `BEGIN
//! IMMEDIATE` transaction (a change that fails is rolled back alone), and
//! commits them together: one `fsync` for the lot (group commit). Only then
//! is each caller answered, so an acknowledged change is on disk.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{Failure, failure, schema};
use crate::store::StoreError;

/// Changes committed together at most.
const MAX_BATCH: usize = 256;

/// What a change leaves for after the commit: given the commit's failure
/// (if any), it answers its caller.
type Answer = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A change, run in the writer's transaction (or told why it could not
/// be); it says whether it succeeded, so that a failure is rolled back.
type Change = Box<dyn FnOnce(Result<&Connection, &StoreError>) -> (bool, Answer) + Send>;

/// The handle to the writer thread; the thread ends when the last handle
/// is dropped.
pub struct Writer {
    changes: mpsc::Sender<Change>,
    path: Arc<Path>,
    /// Changes this handle had committed.
    committed: AtomicU64,
    /// The thread, joined when the handle is dropped: a store closed is
    /// closed (before a daemon forks, say), not closing in the background.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A closed channel ends the thread's loop.
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.changes, closed));
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

impl Writer {
    /// Opens the writing connection (migrating the schema) on a thread of
    /// its own, and returns once it is ready.
    pub async fn start(path: &Path) -> Result<Self, StoreError> {
        let (changes, incoming) = mpsc::channel::<Change>();
        let (ready, opened) = oneshot::channel();
        let path_for_errors = path.to_owned();
        let path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || match schema::open_writer(&path) {
                Ok(connection) => {
                    let _ = ready.send(Ok(()));
                    run(&connection, &path, &incoming);
                }
                Err(err) => {
                    let _ = ready.send(Err(err));
                }
            })
            .map_err(|source| StoreError::Io {
                what: "the store's writer thread".into(),
                source,
            })?;
        opened.await.map_err(|_| StoreError::Poisoned)??;
        Ok(Self {
            changes,
            path: Arc::from(path_for_errors),
            committed: AtomicU64::new(0),
            thread: Some(thread),
        })
    }

    /// Runs `change` in the next transaction and returns its result once
    /// that transaction is committed (or the commit's failure).
    pub async fn write<R: Send + 'static>(
        &self,
        change: impl FnOnce(&Connection) -> Result<R, Failure> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (answer, answered) = oneshot::channel();
        let path = self.path.clone();
        let job: Change = Box::new(move |connection| {
            let result = match connection {
                Ok(connection) => change(connection).map_err(|err| err.into_store_error(&path)),
                Err(err) => Err(copy(err)),
            };
            let succeeded = result.is_ok();
            let answer: Answer = Box::new(move |failed: Option<&StoreError>| {
                let result = match failed {
                    Some(err) if succeeded => Err(copy(err)),
                    _ => result,
                };
                let _ = answer.send(result);
            });
            (succeeded, answer)
        });
        self.changes.send(job).map_err(|_| StoreError::Poisoned)?;
        let result = answered.await.map_err(|_| StoreError::Poisoned)?;
        if result.is_ok() {
            self.committed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// How many changes went through this writer and were committed.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }
}

/// The writer's loop: a batch per wake-up, until every handle is gone.
fn run(connection: &Connection, path: &Path, incoming: &mpsc::Receiver<Change>) {
    while let Ok(first) = incoming.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match incoming.try_recv() {
                Ok(change) => batch.push(change),
                Err(_) => break,
            }
        }
        if !commit(connection, path, batch) {
            tracing::error!(
                path = %path.display(),
                "the store's connection is stuck in a failed transaction; it stops writing: restart the server"
            );
            return;
        }
    }
}

/// Runs `batch` in one transaction, each change in its savepoint, commits,
/// then answers every caller. SQLite may roll the whole transaction back by
/// itself (a full disk, an I/O error): then nothing of the batch is kept,
/// the changes not run yet are not run, and every caller hears so. False
/// when the connection is left inside a transaction it cannot end.
fn commit(connection: &Connection, path: &Path, batch: Vec<Change>) -> bool {
    if let Err(err) = connection.execute_batch("BEGIN IMMEDIATE") {
        let err = failure(path, err);
        for change in batch {
            let (_, answer) = change(Err(&err));
            answer(None);
        }
        return connection.is_autocommit();
    }
    let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
    let mut lost: Option<StoreError> = None;
    for change in batch {
        if let Some(err) = &lost {
            let (_, answer) = change(Err(err));
            answer(None);
            continue;
        }
        let (answer, ended) = in_savepoint(connection, path, change);
        answers.push(answer);
        if !ended || connection.is_autocommit() {
            lost = Some(StoreError::Unavailable(format!(
                "{}: the transaction was rolled back (a full disk or an I/O error); nothing of it was kept",
                path.display()
            )));
        }
    }
    let failed = match lost {
        Some(err) => Some(err),
        None => connection
            .execute_batch("COMMIT")
            .err()
            .map(|err| failure(path, err)),
    };
    if let Some(err) = &failed {
        tracing::warn!(error = %err, "the store could not commit; nothing of it was kept");
        if !connection.is_autocommit() {
            let _ = connection.execute_batch("ROLLBACK");
        }
    }
    for answer in answers {
        answer(failed.as_ref());
    }
    connection.is_autocommit()
}

/// Runs one change in a savepoint, rolled back if the change fails; false
/// when the savepoint could not be ended as it should (its writes may be
/// in the transaction: the batch is given up).
fn in_savepoint(connection: &Connection, path: &Path, change: Change) -> (Answer, bool) {
    if let Err(err) = connection.execute_batch("SAVEPOINT change") {
        let (_, answer) = change(Err(&failure(path, err)));
        return (answer, false);
    }
    let (succeeded, answer) = change(Ok(connection));
    let end = match succeeded {
        true => "RELEASE change",
        false => "ROLLBACK TO change; RELEASE change",
    };
    match connection.execute_batch(end) {
        Ok(()) => (answer, true),
        Err(err) => {
            tracing::warn!(error = %failure(path, err), "the store could not end a savepoint");
            (answer, false)
        }
    }
}

/// The same failure again, for each caller of a failed commit (errors do
/// not clone: their sources are I/O errors).
fn copy(err: &StoreError) -> StoreError {
    match err {
        StoreError::Unavailable(message) => StoreError::Unavailable(message.clone()),
        StoreError::Io { what, source } => StoreError::Io {
            what: what.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        StoreError::Corrupt { what, message } => StoreError::Corrupt {
            what: what.clone(),
            message: message.clone(),
        },
        other => StoreError::Database(other.to_string()),
    }
}
