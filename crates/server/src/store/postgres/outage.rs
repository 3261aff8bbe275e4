//! Whether the database is down: one warning per outage, and a back-off
//! before the next call is let through.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use crate::{store::StoreError, sys::sync::lock};

/// Longest wait between attempts to reach a database that is down.
pub const MAX_RETRY: Duration = Duration::from_secs(1);
/// First wait after the database is found down.
pub(super) const FIRST_RETRY: Duration = Duration::from_millis(100);

/// Whether the database is down, since when, and when to try again.
#[derive(Default)]
pub(super) struct Outage {
    down: Mutex<Option<Down>>,
}

struct Down {
    since: Instant,
    retry_at: Instant,
    wait: Duration,
}

impl Outage {
    pub(super) fn gate(&self) -> Result<(), StoreError> {
        match &*lock(&self.down) {
            Some(down) if Instant::now() < down.retry_at => Err(StoreError::Unavailable(
                "the database is down; retrying".into(),
            )),
            _ => Ok(()),
        }
    }

    pub(super) fn down(&self, why: &str) {
        let now = Instant::now();
        let mut down = lock(&self.down);
        match &mut *down {
            Some(down) => {
                down.wait = (down.wait * 2).min(MAX_RETRY);
                down.retry_at = now + down.wait;
            }
            None => {
                warn!(error = %why, "the database is unreachable: new handshakes get `unavailable` until it is back; established sessions go on");
                *down = Some(Down {
                    since: now,
                    retry_at: now + FIRST_RETRY,
                    wait: FIRST_RETRY,
                });
            }
        }
    }

    pub(super) fn up(&self) {
        if let Some(down) = lock(&self.down).take() {
            info!(
                outage_ms = down.since.elapsed().as_millis() as u64,
                "the database is reachable again"
            );
        }
    }

    /// Whether the database is known down now.
    pub(super) fn is_down(&self) -> bool {
        lock(&self.down).is_some()
    }
}
