//! The on-disk form of the file store: an append-only journal of JSON lines,
//! one record per change, replayed at start-up and rewritten (compacted)
//! once it is more than twice as long as the state it describes.
//!
//! Durability: a batch of lines is written with one `write` and made durable
//! with one `fdatasync` before any of its changes is acknowledged. A line cut
//! short by a crash (no final newline) was never acknowledged and is dropped
//! at the next start. Compaction writes a temporary file, syncs it, renames
//! it over the journal and syncs the directory, so a crash at any point
//! leaves either the old journal or the new one.

use std::{
    collections::{HashMap, VecDeque},
    fs::File,
    io::{self, Read, Write},
    net::IpAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    files,
    store::{StoreError, TokenHash, UnixTime},
};

/// One change, as a line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Record {
    /// A user, created or with a new password hash.
    User {
        name: String,
        hash: String,
        created: UnixTime,
    },
    /// A user removed, with their sessions.
    UserDel { name: String },
    /// An IP address's name.
    Ident {
        ip: IpAddr,
        name: String,
        seen: UnixTime,
    },
    /// A session chain started, or rotated to a new current token.
    Session {
        family: Uuid,
        user: String,
        token: String,
        created: UnixTime,
        used: UnixTime,
        /// Tokens rotated away (only in compacted journals).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rotated: Vec<String>,
    },
    /// A session chain revoked.
    Revoke { family: Uuid },
    /// Every session chain of a user revoked.
    RevokeUser { name: String },
}

/// Everything the store knows, in memory.
#[derive(Debug, Default)]
pub(super) struct State {
    pub users: HashMap<String, User>,
    pub identities: HashMap<IpAddr, Identity>,
    pub families: HashMap<Uuid, Family>,
    /// Every remembered token (current or rotated away) → its chain.
    pub tokens: HashMap<TokenHash, Uuid>,
}

#[derive(Debug, Clone)]
pub(super) struct User {
    pub hash: String,
    pub created: UnixTime,
}

#[derive(Debug, Clone)]
pub(super) struct Identity {
    pub name: String,
    pub seen: UnixTime,
}

#[derive(Debug, Clone)]
pub(super) struct Family {
    pub user: String,
    pub created: UnixTime,
    pub last_used: UnixTime,
    pub current: TokenHash,
    pub rotated: VecDeque<TokenHash>,
}

/// The open journal file, owned by the store's writer thread.
#[derive(Debug)]
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    /// Bytes known to be complete records; a failed write is cut back here.
    len: u64,
    /// Records in the file, for deciding when to compact.
    records: usize,
}

impl State {
    /// Applies one record. Records are written only after they applied
    /// cleanly, so at load an error means the file was damaged.
    pub fn apply(&mut self, record: &Record) -> Result<(), String> {
        match record {
            Record::User {
                name,
                hash,
                created,
            } => {
                self.users.insert(
                    name.clone(),
                    User {
                        hash: hash.clone(),
                        created: *created,
                    },
                );
            }
            Record::UserDel { name } => {
                self.users.remove(name);
                self.revoke_user(name);
            }
            Record::Ident { ip, name, seen } => {
                self.identities.insert(
                    *ip,
                    Identity {
                        name: name.clone(),
                        seen: *seen,
                    },
                );
            }
            Record::Session {
                family,
                user,
                token,
                created,
                used,
                rotated,
            } => {
                let token = parse_token(token)?;
                let rotated = rotated
                    .iter()
                    .map(|t| parse_token(t))
                    .collect::<Result<VecDeque<_>, _>>()?;
                self.tokens.insert(token, *family);
                match self.families.get_mut(family) {
                    Some(chain) => {
                        // Every rotated-away token is kept for the life of
                        // the chain, so reuse of any of them is caught.
                        let old = std::mem::replace(&mut chain.current, token);
                        chain.rotated.push_back(old);
                        chain.last_used = *used;
                    }
                    None => {
                        for old in &rotated {
                            self.tokens.insert(*old, *family);
                        }
                        self.families.insert(
                            *family,
                            Family {
                                user: user.clone(),
                                created: *created,
                                last_used: *used,
                                current: token,
                                rotated,
                            },
                        );
                    }
                }
            }
            Record::Revoke { family } => {
                self.revoke(*family);
            }
            Record::RevokeUser { name } => self.revoke_user(name),
        }
        Ok(())
    }

    /// Forgets a chain and all its tokens; true if it existed.
    pub fn revoke(&mut self, family: Uuid) -> bool {
        let Some(chain) = self.families.remove(&family) else {
            return false;
        };
        self.tokens.remove(&chain.current);
        for old in &chain.rotated {
            self.tokens.remove(old);
        }
        true
    }

    fn revoke_user(&mut self, name: &str) {
        let families: Vec<Uuid> = self
            .families
            .iter()
            .filter(|(_, chain)| chain.user == name)
            .map(|(id, _)| *id)
            .collect();
        for family in families {
            self.revoke(family);
        }
    }

    /// The records that rebuild this state, for compaction.
    pub fn snapshot(&self) -> Vec<Record> {
        let users = self.users.iter().map(|(name, user)| Record::User {
            name: name.clone(),
            hash: user.hash.clone(),
            created: user.created,
        });
        let identities = self.identities.iter().map(|(ip, identity)| Record::Ident {
            ip: *ip,
            name: identity.name.clone(),
            seen: identity.seen,
        });
        let sessions = self.families.iter().map(|(family, chain)| Record::Session {
            family: *family,
            user: chain.user.clone(),
            token: chain.current.to_hex(),
            created: chain.created,
            used: chain.last_used,
            rotated: chain.rotated.iter().map(|t| t.to_hex()).collect(),
        });
        users.chain(identities).chain(sessions).collect()
    }

    /// How many records a compacted journal of this state holds.
    pub fn live_records(&self) -> usize {
        self.users.len() + self.identities.len() + self.families.len()
    }
}

impl Journal {
    /// Opens (or creates) the journal at `path` and replays it. A torn last
    /// line is cut off; any other damage is an error naming the line.
    pub fn open(path: &Path) -> Result<(Self, State), StoreError> {
        let io_error = |source| StoreError::Io {
            what: path.display().to_string(),
            source,
        };
        let existed = path.exists();
        let mut file = files::open_private(path).map_err(io_error)?;
        if !existed {
            sync_dir(path).map_err(io_error)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_error)?;
        let (state, records, complete) = replay(path, &bytes)?;
        if complete < bytes.len() {
            // A write cut short by a crash: never acknowledged, drop it.
            file.set_len(complete as u64).map_err(io_error)?;
            file.sync_all().map_err(io_error)?;
        }
        let journal = Self {
            file,
            path: path.to_owned(),
            len: complete as u64,
            records,
        };
        Ok((journal, state))
    }

    /// Appends `lines` (whole records, each ending in a newline) and makes
    /// them durable. On failure the file is cut back to what it was; if even
    /// that fails the error says so, and the journal must not be used again.
    pub fn append(&mut self, lines: &[u8], count: usize) -> Result<(), AppendError> {
        let result = self
            .file
            .write_all(lines)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len += lines.len() as u64;
                self.records += count;
                Ok(())
            }
            Err(err) => {
                let rolled_back = self
                    .file
                    .set_len(self.len)
                    .and_then(|()| self.file.sync_all())
                    .is_ok();
                Err(AppendError { err, rolled_back })
            }
        }
    }

    /// Whether the file has grown to more than twice the state it holds.
    pub fn wants_compaction(&self, live_records: usize) -> bool {
        self.records > 1_000 && self.records > 2 * live_records
    }

    /// Replaces the journal by `records`: temporary file, fsync, rename,
    /// fsync of the directory.
    pub fn rewrite(&mut self, records: &[Record]) -> io::Result<()> {
        let mut bytes = Vec::new();
        for record in records {
            encode_line(record, &mut bytes);
        }
        files::replace_file(&self.path, &bytes, files::PRIVATE_FILE)?;
        sync_dir(&self.path)?;
        self.file = files::open_private(&self.path)?;
        self.len = bytes.len() as u64;
        self.records = records.len();
        Ok(())
    }

    /// The journal's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replays the file as it is on disk now (after a failed write).
    pub fn reload(&self) -> Result<State, StoreError> {
        let bytes = std::fs::read(&self.path).map_err(|source| StoreError::Io {
            what: self.path.display().to_string(),
            source,
        })?;
        let complete = usize::try_from(self.len)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        replay(&self.path, &bytes[..complete]).map(|(state, _, _)| state)
    }
}

/// A failed append.
#[derive(Debug)]
pub(super) struct AppendError {
    pub err: io::Error,
    /// Whether the file was cut back to its last good length.
    pub rolled_back: bool,
}

/// Appends `record` as one JSON line to `out`.
pub(super) fn encode_line(record: &Record, out: &mut Vec<u8>) {
    // Records hold only strings, numbers and UUIDs: serializing them to a
    // Vec cannot fail.
    #[allow(clippy::unwrap_used)]
    serde_json::to_writer(&mut *out, record).unwrap();
    out.push(b'\n');
}

/// Replays journal bytes: the state, the number of records, and the length
/// of the complete lines (anything after it is a torn write).
fn replay(path: &Path, bytes: &[u8]) -> Result<(State, usize, usize), StoreError> {
    let mut state = State::default();
    let mut records = 0;
    let mut complete = 0;
    for (index, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        if line.last() != Some(&b'\n') {
            break;
        }
        let corrupt = |message: String| StoreError::Corrupt {
            what: format!("file {}, line {}", path.display(), index + 1),
            message,
        };
        let record: Record =
            serde_json::from_slice(&line[..line.len() - 1]).map_err(|e| corrupt(e.to_string()))?;
        state.apply(&record).map_err(corrupt)?;
        records += 1;
        complete += line.len();
    }
    Ok((state, records, complete))
}

fn parse_token(hex: &str) -> Result<TokenHash, String> {
    TokenHash::from_hex(hex).ok_or_else(|| "a token hash is not 64 hex digits".to_owned())
}

/// Makes a file's creation, rename or removal in its directory durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}
