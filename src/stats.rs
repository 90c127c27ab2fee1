//! Pool statistics: per-thread counters, summed on demand.

use crate::sync::atomic::{AtomicU64, Ordering};

/// Counters of one stripe: a worker's own (written by that worker only, with plain
/// stores: [`bump_own`]) or the stripe shared by every other thread (read-modify-writes).
/// `submitted`, `refused` and the four outcomes take part in the shutdown handshake (see
/// `Registry::is_quiescent`); the rest are statistics only.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) submitted: AtomicU64,
    /// Submits counted in `submitted` and then refused because the pool was shutting down.
    pub(crate) refused: AtomicU64,
    pub(crate) started: AtomicU64,
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    /// Of `cancelled`, the jobs that never started.
    pub(crate) unrun: AtomicU64,
    pub(crate) steals: AtomicU64,
    pub(crate) parks: AtomicU64,
}

/// Adds one to a counter that only the calling thread writes: a load and a `Release`
/// store, no locked instruction. A reader that sees the new value (`Acquire`) sees what
/// the thread did before, e.g. the submits a job made before its end was counted.
#[inline]
pub(crate) fn bump_own(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Release);
}

/// A snapshot of a pool's activity since it was built.
///
/// Counters are summed from per-thread stripes without stopping the pool, so a snapshot
/// taken while jobs run may be a few jobs apart between fields; once the pool is idle the
/// sums are exact and `submitted = succeeded + failed + panicked + cancelled + queued +
/// running`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Jobs accepted by a submit.
    pub submitted: u64,
    /// Jobs that started running.
    pub started: u64,
    /// Jobs that returned `Ok`.
    pub succeeded: u64,
    /// Jobs that returned `Err`.
    pub failed: u64,
    /// Jobs that panicked.
    pub panicked: u64,
    /// Jobs that ended cancelled, before or while running.
    pub cancelled: u64,
    /// Of `cancelled`, the jobs that never ran.
    pub cancelled_before_start: u64,
    /// Jobs accepted and not yet started or cancelled (including delayed jobs).
    pub queued: u64,
    /// Jobs running now.
    pub running: u64,
    /// Jobs taken from another worker's deque.
    pub steals: u64,
    /// Times a worker went to sleep.
    pub parks: u64,
    /// Times a sleeping worker was woken.
    pub unparks: u64,
    /// Workers asleep now, waiting for work.
    pub sleeping: usize,
    /// Worker threads (the configured number).
    pub threads: usize,
    /// Spare workers running now: started in place of workers whose jobs block in a
    /// channel wait, so that at least `threads` workers run (they retire once the
    /// blocked jobs are back).
    pub spare_threads: usize,
}

/// Sums of the handshake counters, read in the order the shutdown argument needs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Totals {
    pub(crate) ended: u64,
    pub(crate) refused: u64,
    pub(crate) submitted: u64,
    pub(crate) started: u64,
    pub(crate) unrun: u64,
}

impl Totals {
    /// Reads ended, then refused, then submitted (see `Registry::is_quiescent`).
    pub(crate) fn read<'a>(stripes: impl Iterator<Item = &'a Counters> + Clone) -> Self {
        let sum = |field: fn(&Counters) -> &AtomicU64| -> u64 {
            stripes
                .clone()
                .map(|c| field(c).load(Ordering::SeqCst))
                .sum()
        };
        let ended = sum(|c| &c.succeeded)
            + sum(|c| &c.failed)
            + sum(|c| &c.panicked)
            + sum(|c| &c.cancelled);
        let refused = sum(|c| &c.refused);
        let submitted = sum(|c| &c.submitted);
        Totals {
            ended,
            refused,
            submitted,
            started: sum(|c| &c.started),
            unrun: sum(|c| &c.unrun),
        }
    }

    /// Jobs accepted and not yet ended.
    pub(crate) fn outstanding(&self) -> u64 {
        self.submitted
            .saturating_sub(self.refused)
            .saturating_sub(self.ended)
    }

    /// Jobs started and not yet ended.
    pub(crate) fn running(&self) -> u64 {
        let ended_after_start = self.ended.saturating_sub(self.unrun);
        self.started.saturating_sub(ended_after_start)
    }
}

impl Stats {
    pub(crate) fn collect<'a>(
        stripes: impl Iterator<Item = &'a Counters> + Clone,
        unparks: u64,
        sleeping: usize,
        threads: usize,
        spare_threads: usize,
    ) -> Self {
        let sum = |field: fn(&Counters) -> &AtomicU64| -> u64 {
            stripes
                .clone()
                .map(|c| field(c).load(Ordering::SeqCst))
                .sum()
        };
        let totals = Totals::read(stripes.clone());
        let submitted = totals.submitted.saturating_sub(totals.refused);
        let running = totals.running();
        Stats {
            submitted,
            started: totals.started,
            succeeded: sum(|c| &c.succeeded),
            failed: sum(|c| &c.failed),
            panicked: sum(|c| &c.panicked),
            cancelled: sum(|c| &c.cancelled),
            cancelled_before_start: totals.unrun,
            queued: totals.outstanding().saturating_sub(running),
            running,
            steals: sum(|c| &c.steals),
            parks: sum(|c| &c.parks),
            unparks,
            sleeping,
            threads,
            spare_threads,
        }
    }
}
