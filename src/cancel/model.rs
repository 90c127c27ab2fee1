//! The job of the loom models of `jobs` and `kept`: the real state machine, and how many
//! times the job ended.

use crate::job::state::{Lifecycle, CANCELLED, QUEUED};
use crate::sync::atomic::{AtomicUsize, Ordering};

pub(super) struct Job {
    pub(super) state: Lifecycle,
    ends: AtomicUsize,
}

impl Job {
    /// A queued job.
    pub(super) fn new() -> Self {
        Job {
            state: Lifecycle::new(QUEUED),
            ends: AtomicUsize::new(0),
        }
    }

    /// Ends the job in `phase` (its claimer or canceller does).
    pub(super) fn end(&self, phase: u32) {
        self.ends.fetch_add(1, Ordering::SeqCst);
        let reason = u8::from(phase == CANCELLED);
        let _hook = self.state.finish(phase, reason); // the models register none
    }

    /// `cancel_queued`: ends the job unless it started, calling `first` (a deregistration)
    /// before the end.
    pub(super) fn cancel_queued(&self, first: impl FnOnce()) {
        if self.state.try_cancel().is_some() {
            first();
            self.end(CANCELLED);
        }
    }

    /// How many times the job ended.
    pub(super) fn ends(&self) -> usize {
        self.ends.load(Ordering::SeqCst)
    }
}
