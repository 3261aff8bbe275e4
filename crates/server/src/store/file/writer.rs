//! The store's writer thread: group commit (one fsync for every change
//! queued meanwhile) and compaction once the journal is mostly history.

use std::sync::{Arc, Mutex, mpsc};

use tracing::{error, info, warn};

use super::{Locked, Pending, journal::Journal};
use crate::{
    store::{Lifetimes, StoreError},
    sys::clock::Clock,
    sys::sync::lock,
};

/// Most changes committed with one fsync.
const MAX_BATCH: usize = 4096;

/// The writer thread: takes every queued change, writes them with one
/// fsync, acknowledges them, and compacts the journal now and then.
pub(super) fn write_loop(
    rx: mpsc::Receiver<Pending>,
    mut journal: Journal,
    locked: Arc<Mutex<Locked>>,
    lifetimes: Lifetimes,
    clock: Arc<dyn Clock>,
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
                compact_if_due(&mut journal, &locked, &rx, lifetimes, clock.as_ref());
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
                        what: path.clone(),
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
    clock: &dyn Clock,
) {
    let (records, queued) = {
        let mut guard = lock(locked);
        if !journal.wants_compaction(guard.state.live_records()) {
            return;
        }
        guard.state.forget_expired(lifetimes, clock.now());
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
