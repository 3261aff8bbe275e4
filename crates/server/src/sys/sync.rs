//! The one helper for std mutexes.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, recovering it if a thread panicked while holding it. Every
/// mutex in this crate guards state that is changed by single assignments or
/// whole-value swaps, never left half-changed, so the data is still sound.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
