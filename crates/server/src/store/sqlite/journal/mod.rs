//! The journal store of the previous release, read to be imported: an
//! append-only file of JSON lines, one record per change (`record.rs`),
//! replayed into the state they describe (`state.rs`). A line cut short by
//! a crash (no final newline) was never acknowledged and is dropped; any
//! other damage is an error naming the line. Nothing here writes a journal.

mod record;
pub(super) mod state;

use std::path::Path;

use record::Record;
use state::State;

use crate::store::StoreError;

/// File name of the journal inside the data directory.
pub const JOURNAL_FILE: &str = "store.journal";
/// File name of the journal store's lock file inside the data directory.
pub const LOCK_FILE: &str = "store.lock";

/// Reads the journal at `path` without opening it for writing: its state,
/// a torn last line dropped, the file left as it is (for the import into
/// SQLite).
pub(super) fn read(path: &Path) -> Result<State, StoreError> {
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
