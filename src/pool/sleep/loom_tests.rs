//! loom models of the sleep/wake protocol. The queue is modelled by a counter of
//! published jobs; the protocol code is the real one.

use super::Sleep;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;

struct Model {
    sleep: Sleep,
    queued: AtomicUsize,
    done: AtomicBool,
    /// The pool has park hooks: a searching worker stops searching before it runs them,
    /// and sleeps from there (`WorkerThread::before_sleep`).
    park_hooks: bool,
}

impl Model {
    fn try_pop(&self) -> bool {
        let mut n = self.queued.load(Ordering::SeqCst);
        while n > 0 {
            match self
                .queued
                .compare_exchange(n, n - 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(actual) => n = actual,
            }
        }
        false
    }

    fn has_work(&self) -> bool {
        self.queued.load(Ordering::SeqCst) > 0 || self.done.load(Ordering::SeqCst)
    }

    /// The worker loop of `pool::worker`, reduced to the protocol: look at the queue
    /// while busy, then search (or, when enough workers search already, go straight to
    /// sleep), run what is found, sleep when nothing is. Counts the jobs run in `ran`.
    fn worker(&self, index: usize, total: usize, ran: &AtomicUsize) {
        loop {
            // Busy (counted nowhere): the fast path of `find_local`.
            if self.try_pop() {
                if self.ran_last(total, ran) {
                    return;
                }
                continue;
            }
            let mut searching = self.sleep.try_start_searching();
            loop {
                if searching {
                    if self.done.load(Ordering::SeqCst) {
                        self.sleep.stop_searching(|| false);
                        return;
                    }
                    if self.try_pop() {
                        self.sleep.stop_searching(|| self.has_work());
                        if self.ran_last(total, ran) {
                            return;
                        }
                        break;
                    }
                }
                if self.park_hooks && searching {
                    self.sleep.stop_searching(|| self.has_work());
                    searching = false;
                }
                self.sleep.sleep(index, searching, || self.has_work());
                searching = true;
            }
        }
    }

    /// Counts a job run; the last one ends the model. Returns whether it was the last.
    fn ran_last(&self, total: usize, ran: &AtomicUsize) -> bool {
        if ran.fetch_add(1, Ordering::SeqCst) + 1 == total {
            self.done.store(true, Ordering::SeqCst);
            self.sleep.wake_all();
            return true;
        }
        false
    }
}

fn run(workers: usize, jobs: usize, park_hooks: bool) {
    model(move || {
        let model = Arc::new(Model {
            sleep: Sleep::new(workers),
            queued: AtomicUsize::new(0),
            done: AtomicBool::new(false),
            park_hooks,
        });
        let ran = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..workers)
            .map(|index| {
                let (model, ran) = (model.clone(), ran.clone());
                loom::thread::spawn(move || model.worker(index, jobs, &ran))
            })
            .collect();
        // The publisher: an outside submit is a push followed by `notify_injected`.
        for _ in 0..jobs {
            model.queued.fetch_add(1, Ordering::SeqCst);
            model.sleep.notify_injected();
        }
        // A lost wakeup leaves every worker asleep with a job queued: loom reports the
        // deadlock, because nobody would ever join.
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(ran.load(Ordering::SeqCst), jobs);
    });
}

/// Exhaustive up to a bound of preemptions (the number of forced context switches per
/// execution): bugs of this kind of protocol show up within two or three, and the full
/// space of these models is out of reach. `LOOM_MAX_PREEMPTIONS` overrides the bound;
/// with `JR_LOOM_FULL` set (`make loom-full`) and no `LOOM_MAX_PREEMPTIONS`, there is none.
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    // `make loom-full` sets JR_LOOM_FULL: every interleaving, without a bound.
    if builder.preemption_bound.is_none() && std::env::var_os("JR_LOOM_FULL").is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

#[test]
fn one_job_two_workers_no_lost_wakeup() {
    run(2, 1, false);
}

#[test]
fn two_jobs_one_worker_no_lost_wakeup() {
    run(1, 2, false);
}

#[test]
fn two_jobs_two_workers_no_lost_wakeup() {
    run(2, 2, false);
}

#[test]
fn one_job_two_workers_with_park_hooks_no_lost_wakeup() {
    run(2, 1, true);
}

#[test]
fn two_jobs_two_workers_with_park_hooks_no_lost_wakeup() {
    run(2, 2, true);
}
