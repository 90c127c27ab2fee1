//! What each worker is doing, for `Pool::debug_dump`: a hang's report names the job each
//! worker runs and what it waits for.
//!
//! Each worker slot has an [`Activity`] that only its worker writes, with relaxed loads
//! and stores on a cache line of its own: a job's run saves the three fields (three
//! loads), sets them (three stores) and puts them back (three stores); a wait sets only
//! the state and the target (two stores).
//! The dump reads them without synchronisation, so it is a snapshot that may be a moment
//! stale, which is all a report of a hang (nothing moves) needs.
//!
//! # Memory ordering
//!
//! Relaxed throughout: the values are only ever displayed, never acted upon, and each
//! field is read on its own (a dump may pair a state with the job of the previous state).
//! They are std's atomics even under loom, unlike the rest of the crate (`crate::sync`):
//! they synchronise nothing, so the models have nothing to explore in them.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// No thread runs the slot (not started, exited, or a spare slot at rest).
pub(crate) const STOPPED: u8 = 0;
/// Looking for work, or asleep in the idle protocol (the sleeper list tells which).
pub(crate) const IDLE: u8 = 1;
/// Running the job at `job`.
pub(crate) const RUNNING: u8 = 2;
/// The job at `job` waits for the job at `target` to end (helping or blocked, by policy).
pub(crate) const WAIT_JOB: u8 = 3;
/// The job at `job` waits for the stolen half of a `join` (at `target`).
pub(crate) const WAIT_JOIN: u8 = 4;
/// The job at `job` waits for a grant (semaphore permits), helping or blocked.
pub(crate) const WAIT_GRANT: u8 = 5;
/// The job at `job` blocks in a channel, pipeline or `wait_any` wait (a spare may run in
/// its place).
pub(crate) const WAIT_BLOCKED: u8 = 6;
/// The job at `job` waits to be woken by a group's job end or close (`Group::next`,
/// `Group::wait`), helping or blocked, by policy.
pub(crate) const WAIT_WAKE: u8 = 7;

/// One worker slot's activity (see the module doc).
#[derive(Default)]
pub(crate) struct Activity {
    state: AtomicU8,
    /// The address of the job running (0: none).
    job: AtomicUsize,
    /// The address of what the job waits for (0: none or unknown).
    target: AtomicUsize,
}

/// What [`Activity::enter`] replaced, to put back.
#[derive(Clone, Copy)]
pub(crate) struct Saved {
    state: u8,
    job: usize,
    target: usize,
}

impl Activity {
    /// Sets the activity; returns what it was. Called by the slot's worker only.
    #[inline]
    pub(crate) fn enter(&self, state: u8, job: usize, target: usize) -> Saved {
        let saved = Saved {
            state: self.state.load(Ordering::Relaxed),
            job: self.job.load(Ordering::Relaxed),
            target: self.target.load(Ordering::Relaxed),
        };
        self.state.store(state, Ordering::Relaxed);
        self.job.store(job, Ordering::Relaxed);
        self.target.store(target, Ordering::Relaxed);
        saved
    }

    /// The worker's job starts waiting for `target`, in the way `state` says.
    #[inline]
    pub(crate) fn wait(&self, state: u8, target: usize) -> Saved {
        let saved = Saved {
            state: self.state.load(Ordering::Relaxed),
            job: self.job.load(Ordering::Relaxed),
            target: self.target.load(Ordering::Relaxed),
        };
        self.state.store(state, Ordering::Relaxed);
        self.target.store(target, Ordering::Relaxed);
        saved
    }

    /// Puts back what [`Activity::enter`] replaced.
    #[inline]
    pub(crate) fn restore(&self, saved: Saved) {
        self.state.store(saved.state, Ordering::Relaxed);
        self.job.store(saved.job, Ordering::Relaxed);
        self.target.store(saved.target, Ordering::Relaxed);
    }

    /// Whether no thread runs the slot.
    pub(crate) fn is_stopped(&self) -> bool {
        self.state.load(Ordering::Relaxed) == STOPPED
    }

    /// A line describing the activity, for the dump.
    pub(crate) fn describe(&self, parked: bool) -> String {
        let state = self.state.load(Ordering::Relaxed);
        let job = self.job.load(Ordering::Relaxed);
        let target = self.target.load(Ordering::Relaxed);
        let parked = if parked {
            ", parked in the idle protocol"
        } else {
            ""
        };
        match state {
            STOPPED => "stopped (no thread)".to_owned(),
            IDLE if parked.is_empty() => "idle, looking for work".to_owned(),
            IDLE => "idle, parked".to_owned(),
            RUNNING => format!("running job {job:#x}{parked}"),
            WAIT_JOB => format!("job {job:#x} waits for job {target:#x}{parked}"),
            WAIT_JOIN => format!("job {job:#x} waits for its stolen join half {target:#x}{parked}"),
            WAIT_GRANT => format!("job {job:#x} waits for a semaphore grant{parked}"),
            WAIT_BLOCKED => {
                format!("job {job:#x} blocks in a channel, pipeline or select wait{parked}")
            }
            WAIT_WAKE => format!("job {job:#x} waits for a group's job to end{parked}"),
            _ => format!("state {state}"),
        }
    }
}
