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
    fs::File,
    io::{self, Read, Write},
    path::{Path, PathBuf},
};

use super::{record::Record, state::State};
use crate::{store::StoreError, sys::files};

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

/// Reads the journal at `path` without opening it for writing: its state,
/// a torn last line dropped, the file left as it is (for the import into
/// SQLite).
pub(crate) fn read(path: &Path) -> Result<State, StoreError> {
    let bytes = std::fs::read(path).map_err(|source| StoreError::Io {
        what: path.display().to_string(),
        source,
    })?;
    replay(path, &bytes).map(|(state, _, _)| state)
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
        state
            .apply(&record)
            .map_err(|err| corrupt(err.to_string()))?;
        records += 1;
        complete += line.len();
    }
    Ok((state, records, complete))
}

/// Makes a file's creation, rename or removal in its directory durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}
