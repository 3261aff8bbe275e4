//! The embedded store: state in memory, changes in an append-only journal
//! (`journal.rs`), one writer thread that commits changes in batches
//! (`writer.rs`); `ops.rs` implements [`UserStore`](crate::store::UserStore)
//! on top.

mod journal;
mod ops;
mod record;
pub(crate) mod state;
mod writer;

use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
};

use nix::fcntl::{Flock, FlockArg};
use tokio::sync::oneshot;
use tracing::error;

use crate::{
    store::{Lifetimes, StoreError},
    sys::clock::{Clock, SystemClock},
    sys::files,
    sys::sync::lock,
};
pub(crate) use journal::read as read_journal;
use journal::{Journal, encode_line};
use record::Record;
use state::State;

/// File name of the journal inside the data directory.
pub const JOURNAL_FILE: &str = "store.journal";
/// File name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "store.lock";

/// The file store: a cheap `Clone` handle.
///
/// Reads come from memory. A change is validated and applied in memory and
/// queued for the writer thread while the state lock is held, so the journal
/// holds changes in the order they were applied; the caller then waits
/// (without holding any lock) until the writer has made it durable. A change
/// another client sees before it is durable is harmless: whatever depends on
/// it is written after it in the same journal. If a write fails, the state
/// is reloaded from the journal, so memory never holds what the disk lacks.
#[derive(Debug, Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// std `Mutex`: it is never held across an `.await`, and the writer
    /// thread, which is not async, takes it too.
    locked: Arc<Mutex<Locked>>,
    /// Taken only while `locked` is held, so queue order is apply order.
    sender: Mutex<Option<mpsc::Sender<Pending>>>,
    /// The journal until the writer thread takes it. The thread starts at
    /// the first write, not at open: a daemon opens its store before it
    /// forks, and threads do not survive a fork.
    journal: Mutex<Option<Journal>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    lifetimes: Lifetimes,
    /// Decides which chains have expired when the journal is compacted.
    clock: Arc<dyn Clock>,
    dir: PathBuf,
    /// Held for the life of the store; the OS releases it if the process dies.
    _lock: Flock<File>,
}

#[derive(Debug)]
struct Locked {
    state: State,
    /// Set when a failed write could not be undone: no more writes.
    poisoned: bool,
}

/// Lines waiting for the writer, and whom to tell once they are durable.
struct Pending {
    lines: Vec<u8>,
    count: usize,
    ack: oneshot::Sender<Result<(), StoreError>>,
}

impl FileStore {
    /// Opens the store in `dir` (created if missing), taking its lock and
    /// replaying its journal. A store another process holds, or a damaged
    /// journal, is an error naming the file.
    pub fn open(dir: &Path, lifetimes: Lifetimes) -> Result<Self, StoreError> {
        Self::open_with_clock(dir, lifetimes, Arc::new(SystemClock))
    }

    /// [`FileStore::open`], with `clock` deciding what has expired.
    pub fn open_with_clock(
        dir: &Path,
        lifetimes: Lifetimes,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let io_error = |path: &Path| {
            let what = path.display().to_string();
            move |source| StoreError::Io { what, source }
        };
        files::create_private_dir(dir).map_err(io_error(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = files::open_private(&lock_path).map_err(io_error(&lock_path))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|_| {
            StoreError::InUse {
                what: lock_path.display().to_string(),
            }
        })?;
        let (journal, state) = Journal::open(&dir.join(JOURNAL_FILE))?;
        Ok(Self {
            inner: Arc::new(Inner {
                locked: Arc::new(Mutex::new(Locked {
                    state,
                    poisoned: false,
                })),
                sender: Mutex::new(None),
                journal: Mutex::new(Some(journal)),
                writer: Mutex::new(None),
                lifetimes,
                clock,
                dir: dir.to_owned(),
                _lock: lock,
            }),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&lock(&self.inner.locked).state)
    }

    /// Runs `change` on the state: it validates and returns the records to
    /// apply and write, and a value to return once they are durable.
    async fn write<T>(
        &self,
        change: impl FnOnce(&State) -> Result<(Vec<Record>, T), StoreError>,
    ) -> Result<T, StoreError> {
        let (durable, value) = self.commit(change)?;
        if let Some(durable) = durable {
            durable.await.map_err(|_| StoreError::Poisoned)??;
        }
        Ok(value)
    }

    #[allow(clippy::type_complexity)]
    fn commit<T>(
        &self,
        change: impl FnOnce(&State) -> Result<(Vec<Record>, T), StoreError>,
    ) -> Result<(Option<oneshot::Receiver<Result<(), StoreError>>>, T), StoreError> {
        let mut locked = lock(&self.inner.locked);
        if locked.poisoned {
            return Err(StoreError::Poisoned);
        }
        let (records, value) = change(&locked.state)?;
        if records.is_empty() {
            return Ok((None, value));
        }
        let mut lines = Vec::new();
        for record in &records {
            if let Err(message) = locked.state.apply(record) {
                // Records built here always apply; refuse rather than write
                // something the next start could not read.
                error!(%message, "store refused an invalid record");
                return Err(StoreError::Poisoned);
            }
            encode_line(record, &mut lines);
        }
        let (ack, durable) = oneshot::channel();
        let pending = Pending {
            lines,
            count: records.len(),
            ack,
        };
        self.inner.send(pending)?;
        Ok((Some(durable), value))
    }
}

impl Inner {
    fn send(&self, pending: Pending) -> Result<(), StoreError> {
        let mut sender = lock(&self.sender);
        if sender.is_none() {
            let journal = lock(&self.journal).take().ok_or(StoreError::Poisoned)?;
            let (tx, rx) = mpsc::channel();
            let locked = Arc::clone(&self.locked);
            let lifetimes = self.lifetimes;
            let clock = Arc::clone(&self.clock);
            let handle = std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer::write_loop(rx, journal, locked, lifetimes, clock))
                .map_err(|source| StoreError::Io {
                    what: self.dir.display().to_string(),
                    source,
                })?;
            *lock(&self.writer) = Some(handle);
            *sender = Some(tx);
        }
        match sender.as_ref() {
            Some(tx) => tx.send(pending).map_err(|_| StoreError::Poisoned),
            None => Err(StoreError::Poisoned),
        }
    }
}

impl Drop for Inner {
    /// Lets the writer finish what is queued, then waits for it: nothing
    /// acknowledged or queued is lost when the store is dropped.
    fn drop(&mut self) {
        lock(&self.sender).take();
        if let Some(handle) = lock(&self.writer).take() {
            let _ = handle.join();
        }
    }
}
