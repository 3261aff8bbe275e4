//! Gives freed memory back to the OS. The allocator keeps what is freed for
//! reuse, so after a burst of clients the process would stay at its peak
//! size: what closed connections held, and what handshakes made and let go
//! (store answers, messages, read buffers) in between the sessions that
//! stay, which only whole free pages can return. Once many connections
//! have come or gone since the last trim, and the last interval was calm,
//! the trimmer asks the allocator to return its free pages (on the blocking
//! pool). Not during a burst: a trim holds each allocator arena's lock
//! while it walks it, and one every 2 s while 15,000 sessions logged in
//! slowed the last tenth of them from 6,400 to 1,400-2,600 a second
//! (#30; after the burst, the idle sessions hold 0.7 KiB less each).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::sleep;
use tokio_util::sync::CancellationToken;

/// How often to check whether many connections have come or gone.
const TRIM_INTERVAL: Duration = Duration::from_secs(2);
/// Connections come or gone since the last trim that make another worth it.
const TRIM_AFTER: u64 = 256;

/// Connections that came (admitted) or went (their task ended, whatever
/// became of it: a handshake that never finished held buffers too).
#[derive(Debug, Clone, Default)]
pub(super) struct Churn(Arc<AtomicU64>);

impl Churn {
    /// One connection came, or went.
    pub(super) fn tick(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts as gone when dropped, on every path.
    pub(super) fn on_drop(&self) -> Gone {
        Gone(self.clone())
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Ticks its [`Churn`] when dropped.
pub(super) struct Gone(Churn);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.tick();
    }
}

/// Looks every [`TRIM_INTERVAL`], and trims when [`TRIM_AFTER`] or more
/// connections came or went since the last trim and fewer than that in
/// the last interval (the burst is over); until shutdown.
pub(super) async fn trim_memory(churn: Churn, shutdown: CancellationToken) {
    trim_with(churn, shutdown, release_free_memory).await;
}

async fn trim_with(churn: Churn, shutdown: CancellationToken, release: fn()) {
    let (mut at_last_trim, mut at_last_look) = (0, 0);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = sleep(TRIM_INTERVAL) => {}
        }
        let now = churn.count();
        let calm = now - at_last_look < TRIM_AFTER;
        at_last_look = now;
        if calm && now - at_last_trim >= TRIM_AFTER {
            at_last_trim = now;
            let _ = tokio::task::spawn_blocking(release).await;
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim takes an integer and only walks the allocator's
    // own free lists, which it locks itself.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    static TRIMS: AtomicUsize = AtomicUsize::new(0);

    fn counted() {
        TRIMS.fetch_add(1, Ordering::SeqCst);
    }

    /// Moves the paused clock one look of the trimmer on.
    async fn one_look() {
        sleep(TRIM_INTERVAL + Duration::from_millis(1)).await;
        // The trim itself runs on the blocking pool.
        for _ in 0..50 {
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn connections_that_come_count_and_a_burst_is_trimmed_once_it_is_over() {
        let (churn, shutdown) = (Churn::default(), CancellationToken::new());
        tokio::spawn(trim_with(churn.clone(), shutdown.clone(), counted));
        // A burst of connections that stay (none has gone), over two looks.
        for _ in 0..2 {
            for _ in 0..TRIM_AFTER {
                churn.tick();
            }
            one_look().await;
            assert_eq!(TRIMS.load(Ordering::SeqCst), 0, "trimmed during the burst");
        }
        // Its tail, and then calm: one trim.
        churn.tick();
        one_look().await;
        assert_eq!(TRIMS.load(Ordering::SeqCst), 1, "not trimmed once calm");
        // A few more come and go: not worth another.
        drop(churn.on_drop());
        one_look().await;
        one_look().await;
        assert_eq!(
            TRIMS.load(Ordering::SeqCst),
            1,
            "a trim for a few connections"
        );
        shutdown.cancel();
    }
}
