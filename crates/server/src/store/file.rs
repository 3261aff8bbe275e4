//! The embedded store: state in memory, changes in an append-only journal
//! (`journal.rs`), one writer thread that commits changes in batches.

use std::{
    fs::{File, OpenOptions},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, mpsc},
    thread::JoinHandle,
    time::{SystemTime, UNIX_EPOCH},
};

use nix::fcntl::{Flock, FlockArg};
use tokio::sync::oneshot;
use tracing::{error, info, warn};
use uuid::Uuid;

use super::{
    Lifetimes, Rotation, SessionInfo, StoreError, TokenHash, UnixTime, UserRecord, UserStore,
    journal::{Journal, Record, State, encode_line},
};

/// File name of the journal inside the data directory.
pub const JOURNAL_FILE: &str = "store.journal";
/// File name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "store.lock";
/// Most changes committed with one fsync.
const MAX_BATCH: usize = 4096;

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
        let io_error = |path: &Path| {
            let path = path.display().to_string();
            move |source| StoreError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|_| {
            StoreError::Locked {
                path: lock_path.display().to_string(),
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
            let handle = std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || write_loop(rx, journal, locked, lifetimes))
                .map_err(|source| StoreError::Io {
                    path: self.dir.display().to_string(),
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

/// The writer thread: takes every queued change, writes them with one
/// fsync, acknowledges them, and compacts the journal now and then.
fn write_loop(
    rx: mpsc::Receiver<Pending>,
    mut journal: Journal,
    locked: Arc<Mutex<Locked>>,
    lifetimes: Lifetimes,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter().take(MAX_BATCH));
        let mut lines = Vec::new();
        let mut count = 0;
        for pending in &batch {
            lines.extend_from_slice(&pending.lines);
            count += pending.count;
        }
        match journal.append(&lines, count) {
            Ok(()) => {
                for pending in batch {
                    let _ = pending.ack.send(Ok(()));
                }
                compact_if_due(&mut journal, &locked, &rx, lifetimes);
            }
            Err(failure) => {
                error!(
                    path = %journal.path().display(),
                    error = %failure.err,
                    "store write failed; the change was not made"
                );
                // Everything queued was applied in memory after this batch:
                // fail it all and rebuild memory from the journal.
                let mut state = lock(&locked);
                batch.extend(rx.try_iter());
                let reloaded = if failure.rolled_back {
                    journal.reload().ok()
                } else {
                    None
                };
                match reloaded {
                    Some(fresh) => state.state = fresh,
                    None => {
                        error!(
                            "the store could not undo the failed write; refusing further writes"
                        );
                        state.poisoned = true;
                    }
                }
                drop(state);
                let path = journal.path().display().to_string();
                for pending in batch {
                    let _ = pending.ack.send(Err(StoreError::Io {
                        path: path.clone(),
                        source: std::io::Error::new(failure.err.kind(), failure.err.to_string()),
                    }));
                }
            }
        }
    }
}

/// Rewrites the journal from the state once it is mostly history. Changes
/// queued meanwhile are already in the state, so the snapshot holds them.
fn compact_if_due(
    journal: &mut Journal,
    locked: &Mutex<Locked>,
    rx: &mpsc::Receiver<Pending>,
    lifetimes: Lifetimes,
) {
    let (records, queued) = {
        let mut guard = lock(locked);
        if !journal.wants_compaction(guard.state.live_records()) {
            return;
        }
        let now = unix_now();
        let expired: Vec<Uuid> = guard
            .state
            .families
            .iter()
            .filter(|(_, chain)| lifetimes.expires(chain.created, chain.last_used) <= now)
            .map(|(family, _)| *family)
            .collect();
        for family in expired {
            guard.state.revoke(family);
        }
        let queued: Vec<Pending> = rx.try_iter().collect();
        (guard.state.snapshot(), queued)
    };
    match journal.rewrite(&records) {
        Ok(()) => {
            info!(records = records.len(), "store journal compacted");
            for pending in queued {
                let _ = pending.ack.send(Ok(()));
            }
        }
        Err(err) => {
            warn!(error = %err, "store compaction failed; keeping the journal as it is");
            let mut lines = Vec::new();
            let mut count = 0;
            for pending in &queued {
                lines.extend_from_slice(&pending.lines);
                count += pending.count;
            }
            let result = journal.append(&lines, count);
            for pending in queued {
                let outcome = match &result {
                    Ok(()) => Ok(()),
                    Err(_) => Err(StoreError::Poisoned),
                };
                let _ = pending.ack.send(outcome);
            }
            if result.is_err() {
                lock(locked).poisoned = true;
            }
        }
    }
}

/// Locks a mutex, recovering it if a thread panicked while holding it: the
/// state is updated by single assignments, never left half-changed.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unix_now() -> UnixTime {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn session_info(family: Uuid, chain: &super::journal::Family, lifetimes: Lifetimes) -> SessionInfo {
    SessionInfo {
        family,
        user: chain.user.clone(),
        created: chain.created,
        last_used: chain.last_used,
        expires: lifetimes.expires(chain.created, chain.last_used),
    }
}

impl UserStore for FileStore {
    async fn identity(&self, ip: IpAddr) -> Result<Option<String>, StoreError> {
        Ok(self.read(|state| state.identities.get(&ip).map(|i| i.name.clone())))
    }

    async fn remember_identity(
        &self,
        ip: IpAddr,
        name: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let record = Record::Ident {
            ip,
            name: name.to_owned(),
            seen: now,
        };
        self.write(|_| Ok((vec![record], ()))).await
    }

    async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.read(|state| {
            state.users.get(name).map(|user| UserRecord {
                name: name.to_owned(),
                password_hash: user.hash.clone(),
                created: user.created,
            })
        }))
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut users = self.read(|state| {
            state
                .users
                .iter()
                .map(|(name, user)| UserRecord {
                    name: name.clone(),
                    password_hash: user.hash.clone(),
                    created: user.created,
                })
                .collect::<Vec<_>>()
        });
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }

    async fn create_user(&self, user: UserRecord) -> Result<(), StoreError> {
        self.write(|state| {
            if state.users.contains_key(&user.name) {
                return Err(StoreError::NameTaken(user.name.clone()));
            }
            let record = Record::User {
                name: user.name,
                hash: user.password_hash,
                created: user.created,
            };
            Ok((vec![record], ()))
        })
        .await
    }

    async fn register(
        &self,
        user: UserRecord,
        token: TokenHash,
    ) -> Result<SessionInfo, StoreError> {
        let lifetimes = self.inner.lifetimes;
        self.write(|state| {
            if state.users.contains_key(&user.name) {
                return Err(StoreError::NameTaken(user.name.clone()));
            }
            let family = Uuid::new_v4();
            let now = user.created;
            let info = SessionInfo {
                family,
                user: user.name.clone(),
                created: now,
                last_used: now,
                expires: lifetimes.expires(now, now),
            };
            let records = vec![
                Record::User {
                    name: user.name.clone(),
                    hash: user.password_hash,
                    created: now,
                },
                Record::Session {
                    family,
                    user: user.name,
                    token: token.to_hex(),
                    created: now,
                    used: now,
                    rotated: Vec::new(),
                },
            ];
            Ok((records, info))
        })
        .await
    }

    async fn set_password(&self, name: &str, password_hash: String) -> Result<(), StoreError> {
        self.write(|state| {
            let user = state
                .users
                .get(name)
                .ok_or_else(|| StoreError::NoSuchUser(name.to_owned()))?;
            let records = vec![
                Record::User {
                    name: name.to_owned(),
                    hash: password_hash,
                    created: user.created,
                },
                Record::RevokeUser {
                    name: name.to_owned(),
                },
            ];
            Ok((records, ()))
        })
        .await
    }

    async fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        self.write(|state| {
            if !state.users.contains_key(name) {
                return Err(StoreError::NoSuchUser(name.to_owned()));
            }
            Ok((
                vec![Record::UserDel {
                    name: name.to_owned(),
                }],
                (),
            ))
        })
        .await
    }

    async fn create_session(
        &self,
        token: TokenHash,
        user: &str,
        now: UnixTime,
    ) -> Result<SessionInfo, StoreError> {
        let lifetimes = self.inner.lifetimes;
        self.write(|state| {
            if !state.users.contains_key(user) {
                return Err(StoreError::NoSuchUser(user.to_owned()));
            }
            let family = Uuid::new_v4();
            let record = Record::Session {
                family,
                user: user.to_owned(),
                token: token.to_hex(),
                created: now,
                used: now,
                rotated: Vec::new(),
            };
            let info = SessionInfo {
                family,
                user: user.to_owned(),
                created: now,
                last_used: now,
                expires: lifetimes.expires(now, now),
            };
            Ok((vec![record], info))
        })
        .await
    }

    async fn rotate_session(
        &self,
        presented: TokenHash,
        next: TokenHash,
        now: UnixTime,
    ) -> Result<Rotation, StoreError> {
        let lifetimes = self.inner.lifetimes;
        self.write(|state| {
            let Some(chain) = state
                .tokens
                .get(&presented)
                .and_then(|family| state.families.get_key_value(family))
            else {
                return Ok((Vec::new(), Rotation::Unknown));
            };
            let (family, chain) = (*chain.0, chain.1);
            if !chain.current.ct_eq(&presented) {
                let outcome = Rotation::Reused {
                    user: chain.user.clone(),
                    family,
                };
                return Ok((vec![Record::Revoke { family }], outcome));
            }
            if lifetimes.expires(chain.created, chain.last_used) <= now {
                let outcome = Rotation::Expired {
                    user: chain.user.clone(),
                };
                return Ok((vec![Record::Revoke { family }], outcome));
            }
            let record = Record::Session {
                family,
                user: chain.user.clone(),
                token: next.to_hex(),
                created: chain.created,
                used: now,
                rotated: Vec::new(),
            };
            let mut info = session_info(family, chain, lifetimes);
            info.last_used = now;
            info.expires = lifetimes.expires(chain.created, now);
            Ok((vec![record], Rotation::Rotated(info)))
        })
        .await
    }

    async fn revoke_session(&self, family: Uuid) -> Result<bool, StoreError> {
        self.write(|state| {
            if state.families.contains_key(&family) {
                Ok((vec![Record::Revoke { family }], true))
            } else {
                Ok((Vec::new(), false))
            }
        })
        .await
    }

    async fn revoke_user_sessions(&self, user: &str) -> Result<usize, StoreError> {
        self.write(|state| {
            let count = state.families.values().filter(|c| c.user == user).count();
            let records = if count > 0 {
                vec![Record::RevokeUser {
                    name: user.to_owned(),
                }]
            } else {
                Vec::new()
            };
            Ok((records, count))
        })
        .await
    }

    async fn sessions(&self, user: &str, now: UnixTime) -> Result<Vec<SessionInfo>, StoreError> {
        let lifetimes = self.inner.lifetimes;
        let mut sessions = self.read(|state| {
            state
                .families
                .iter()
                .filter(|(_, chain)| chain.user == user)
                .map(|(family, chain)| session_info(*family, chain, lifetimes))
                .filter(|info| info.expires > now)
                .collect::<Vec<_>>()
        });
        sessions.sort_by_key(|info| info.created);
        Ok(sessions)
    }
}
