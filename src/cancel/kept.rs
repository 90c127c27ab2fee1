//! Jobs kept by their owner for a token's cancel, instead of registered with the token.
//!
//! A group keeps its pending jobs in its own table anyway (to run them inline when a
//! worker waits for the group), and all of them share the group's token. Registering each
//! with the token too would cost every job a registration by its submitter and a
//! deregistration by the worker that claims it (two locks and a cache line that crosses
//! cores, per job). So the group's jobs are not registered: the group keeps each in its
//! table before the job can be claimed, and a callback on the token ends the table's
//! jobs when the token is cancelled.
//!
//! # Protocol
//!
//! The token's cancel sets its reason, then runs its callbacks; the group's callback
//! takes the jobs out of the table under the table's lock (`take_kept`) and ends those
//! that have not started. A submit keeps its job under the same lock, after looking at
//! the reason under it (`keep_unless`), and only then queues the job. So either the
//! keep's critical section comes first, and the callback (which follows it) finds the
//! job; or the callback's comes first, and the keep, ordered after the reason's store by
//! the lock, sees the reason and refuses (the submit then ends the job itself, never
//! queued). A cancel never misses a kept job, and a job of a cancelled token never starts
//! after the cancel has returned.
//!
//! The model at the bottom races a keep, a claim and a cancel. It fails if the reason is
//! looked at before the lock is taken.

use crate::sync::{lock, Mutex};

/// The submit's half: unless `cancelled()` (the token's reason, looked at under the
/// table's lock), runs `keep` on the table and returns true; false if the token is
/// cancelled (the caller ends the job itself, without queueing it).
pub(crate) fn keep_unless<S>(
    table: &Mutex<S>,
    cancelled: impl FnOnce() -> bool,
    keep: impl FnOnce(&mut S),
) -> bool {
    let mut table = lock(table);
    if cancelled() {
        return false;
    }
    keep(&mut table);
    true
}

/// The cancel's half, once the token's reason is set: what `take` takes from the table,
/// under its lock (the caller ends the jobs outside it).
pub(crate) fn take_kept<S, R>(table: &Mutex<S>, take: impl FnOnce(&mut S) -> R) -> R {
    take(&mut lock(table))
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::cancel::model::Job;
    use crate::job::state::SUCCEEDED;
    use crate::sync::atomic::{AtomicBool, AtomicU8, Ordering};
    use loom::sync::Arc;

    /// A group reduced to its token's reason and its table of kept jobs.
    struct Group {
        reason: AtomicU8,
        table: Mutex<Vec<Arc<Job>>>,
    }

    impl Group {
        /// The token's cancel: the reason first, then the group's callback.
        fn cancel(&self) {
            self.reason.store(1, Ordering::SeqCst);
            let kept = take_kept(&self.table, std::mem::take);
            for job in kept {
                job.cancel_queued(|| {});
            }
        }
    }

    /// A submitter keeps a job (or, refused, ends it itself) and queues it; a worker
    /// claims it if it is queued by then; a third thread cancels the token. Whatever the
    /// interleaving, the job ends exactly once: claimed, or cancelled (by the cancel, or
    /// by its submitter, refused). A job kept but never claimed nor cancelled would be
    /// left queued after the cancel returned.
    #[test]
    fn keep_claim_cancel() {
        crate::pool::sleep::loom_tests::model(|| {
            let group = Arc::new(Group {
                reason: AtomicU8::new(0),
                table: Mutex::new(Vec::new()),
            });
            let job = Arc::new(Job::new());
            let queued = Arc::new(AtomicBool::new(false));

            let canceller = {
                let group = group.clone();
                loom::thread::spawn(move || group.cancel())
            };
            let worker = {
                let (job, queued) = (job.clone(), queued.clone());
                loom::thread::spawn(move || {
                    if queued.load(Ordering::Acquire) && job.state.try_claim() {
                        job.end(SUCCEEDED);
                    }
                })
            };
            // The submitter.
            let cancelled = || group.reason.load(Ordering::SeqCst) != 0;
            if keep_unless(&group.table, cancelled, |table| table.push(job.clone())) {
                queued.store(true, Ordering::Release);
            } else {
                job.cancel_queued(|| {});
            }
            canceller.join().unwrap();
            worker.join().unwrap();

            assert_eq!(
                job.ends(),
                1,
                "the job ended twice, or was left queued by the cancel"
            );
        });
    }
}
