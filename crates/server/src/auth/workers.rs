//! The threads that do password work (Argon2id, the strength estimate):
//! `password_workers` of them, started once and kept, each at the lowest
//! scheduling priority the kernel has (`SCHED_IDLE` on Linux). A thread that
//! serves echo traffic and wakes up while every core is hashing takes a core
//! at once: the kernel always preempts an idle-priority thread for a normal
//! one, where between two normal threads the woken one may wait for the
//! other's time slice (milliseconds). Password work gets every cycle the
//! established sessions leave, which is all of them but a few percent
//! unless the machine is saturated.
//!
//! The blocking pool cannot be used for this: a thread that has lowered its
//! priority may not raise it again without privileges, and the pool's
//! threads serve other work too.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc, Mutex,
        mpsc::{Receiver, Sender, channel},
    },
};

use tokio::sync::{Semaphore, oneshot};
use tracing::{debug, warn};

use crate::sys::sync::lock;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of low-priority threads taking jobs in turn, one job per
/// thread at a time: a job waits for a free thread before it is queued.
/// Dropping the last handle lets the threads finish.
#[derive(Debug)]
pub(crate) struct Workers {
    jobs: Sender<Job>,
    free: Semaphore,
}

/// The job could not run: its thread stopped (a panic in the job).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lost;

impl Workers {
    /// Starts `count` threads (at least one).
    pub(crate) fn start(count: usize) -> std::io::Result<Self> {
        let count = count.max(1);
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..count {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("password-{i}"))
                .spawn(move || serve(&queue))?;
        }
        Ok(Self {
            jobs,
            free: Semaphore::new(count),
        })
    }

    /// Runs `job` on one of the threads once one is free, and waits for
    /// its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Lost> {
        let _thread = self.free.acquire().await.map_err(|_| Lost)?;
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(job());
        });
        self.jobs.send(job).map_err(|_| Lost)?;
        result.await.map_err(|_| Lost)
    }
}

/// One thread: lowest priority, then jobs until the sender is gone. A job
/// that panics is reported and the thread goes on.
fn serve(queue: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let next = lock(queue).recv();
        let Ok(job) = next else { return };
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            warn!("a password job panicked; its caller gets an error");
        }
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    let param = nix::libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads the parameter struct it is given and
    // changes only the calling thread's policy (pid 0 is this thread).
    #[allow(unsafe_code)]
    let set = unsafe { nix::libc::sched_setscheduler(0, nix::libc::SCHED_IDLE, &param) };
    if set != 0 {
        debug!(error = %std::io::Error::last_os_error(), "password thread keeps its priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_idle_priority_threads_and_survive_a_panic() {
        let workers = Workers::start(2).unwrap();
        let name = workers
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("password-"));
        #[cfg(target_os = "linux")]
        {
            // SAFETY: sched_getscheduler only reads the calling thread's policy.
            #[allow(unsafe_code)]
            let policy = workers
                .run(|| unsafe { nix::libc::sched_getscheduler(0) })
                .await
                .unwrap();
            assert_eq!(policy, nix::libc::SCHED_IDLE);
        }
        assert!(workers.run(|| panic!("boom")).await.is_err());
        // Both threads are still there to take jobs.
        let (a, b) = tokio::join!(workers.run(|| 1), workers.run(|| 2));
        assert_eq!((a.unwrap(), b.unwrap()), (1, 2));
    }
}
