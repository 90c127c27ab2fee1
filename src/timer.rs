//! A timer thread: entries fire, in due order, on one thread that exists only once
//! something has been scheduled. Pools use one for delayed jobs; cancellation tokens share
//! a process-wide one for deadlines.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::sync::{lock, wait, wait_timeout, Condvar, Mutex};

/// `timeout` from now, saturated: an `Instant` cannot hold absurd timeouts
/// (`Duration::MAX`), which become a century. Every timed wait computes its deadline so.
pub(crate) fn deadline_after(timeout: std::time::Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Identifies a scheduled entry: its due time (nanoseconds after a process epoch), then
/// the order it was scheduled in. Two words rather than an `Instant` and a word: the timer
/// holds one per pending entry, so its size is most of what a pending delayed job costs
/// the timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerKey {
    at: u64,
    seq: u64,
}

/// The instant due times are counted from. Due times are never before it: it is taken
/// before the first schedule, and due times are "now" or later.
static EPOCH: once_cell::sync::Lazy<Instant> = once_cell::sync::Lazy::new(Instant::now);

/// `at` as nanoseconds after the epoch (saturating: 584 years fit).
fn nanos_since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(*EPOCH).as_nanos()).unwrap_or(u64::MAX)
}

/// The instant `nanos_since_epoch` gave `nanos` for.
fn instant_at(nanos: u64) -> Instant {
    *EPOCH + std::time::Duration::from_nanos(nanos)
}

impl TimerKey {
    /// The key as two words (due time, sequence or id), to keep in atomics.
    pub(crate) fn to_parts(self) -> (u64, u64) {
        (self.at, self.seq)
    }

    /// The key `to_parts` gave.
    pub(crate) fn from_parts(at: u64, seq: u64) -> Self {
        TimerKey { at, seq }
    }
}

pub(crate) struct Timer<T: Send + 'static> {
    shared: Arc<Shared<T>>,
}

type FireFn<T> = Box<dyn Fn(T) + Send + Sync>;

struct Shared<T> {
    state: Mutex<State<T>>,
    condvar: Condvar,
    fire: FireFn<T>,
    thread_name: String,
}

struct State<T> {
    entries: BTreeMap<TimerKey, T>,
    next_seq: u64,
    /// Whether our thread was started, in which fork generation: a forked child has
    /// none (threads do not follow a fork) and starts its own.
    started: Option<u64>,
    shutdown: bool,
}

impl<T: Send + 'static> Timer<T> {
    /// A timer whose thread (started on the first `schedule`) calls `fire` on each entry
    /// when it comes due, outside the timer's lock.
    pub(crate) fn new(thread_name: String, fire: impl Fn(T) + Send + Sync + 'static) -> Self {
        Timer {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    entries: BTreeMap::new(),
                    next_seq: 0,
                    started: None,
                    shutdown: false,
                }),
                condvar: Condvar::new(),
                fire: Box::new(fire),
                thread_name,
            }),
        }
    }

    /// Schedules `entry` to fire at `at`. Gives the entry back if the timer is shut down or
    /// its thread could not be started.
    pub(crate) fn schedule(&self, at: Instant, entry: T) -> Result<TimerKey, T> {
        self.schedule_keyed(at, None, entry)
    }

    /// Schedules `entry` as [`Timer::schedule`] does, but under the caller's `id` in place
    /// of the next sequence number: an owner that can name its entry (a delayed job, by
    /// its address) then needs only the due time to rebuild the key
    /// (`TimerKey::from_parts(at, id)`). Entries due at the same time fire in `id` order.
    /// `id` must be unique among the timer's pending entries, and a timer must be used
    /// with ids only or sequence numbers only.
    pub(crate) fn schedule_as(&self, at: Instant, id: u64, entry: T) -> Result<TimerKey, T> {
        self.schedule_keyed(at, Some(id), entry)
    }

    fn schedule_keyed(&self, at: Instant, id: Option<u64>, entry: T) -> Result<TimerKey, T> {
        let at = nanos_since_epoch(at);
        let mut state = lock(&self.shared.state);
        if state.shutdown {
            return Err(entry);
        }
        let generation = crate::process::generation();
        if state.started != Some(generation) {
            if state.started.is_some() {
                // A forked child: the entries are the parent's (its tokens' deadlines,
                // its pools' delayed jobs), unusable here, and firing one could take a
                // lock a parent thread held at the fork. Leaked, not dropped: dropping
                // could take such a lock too.
                std::mem::forget(std::mem::take(&mut state.entries));
            }
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name(self.shared.thread_name.clone())
                .spawn(move || shared.run());
            if spawned.is_err() {
                return Err(entry);
            }
            state.started = Some(generation);
        }
        let key = TimerKey {
            at,
            seq: id.unwrap_or(state.next_seq),
        };
        state.next_seq += 1;
        let earliest = state
            .entries
            .first_key_value()
            .is_none_or(|(k, _)| key < *k);
        state.entries.insert(key, entry);
        drop(state);
        if earliest {
            self.shared.condvar.notify_one();
        }
        Ok(key)
    }

    /// Removes a scheduled entry that has not fired yet.
    pub(crate) fn cancel(&self, key: TimerKey) -> Option<T> {
        lock(&self.shared.state).entries.remove(&key)
    }

    /// Removes and returns every scheduled entry, in due order.
    pub(crate) fn drain(&self) -> Vec<T> {
        let entries = std::mem::take(&mut lock(&self.shared.state).entries);
        entries.into_values().collect()
    }

    /// Entries scheduled and not yet fired.
    pub(crate) fn len(&self) -> usize {
        lock(&self.shared.state).entries.len()
    }

    /// Holds the timer's lock across a `fork()` (see `process`).
    #[cfg_attr(not(feature = "capi"), allow(dead_code))]
    pub(crate) fn lock_for_fork(&'static self) -> Box<dyn std::any::Any> {
        Box::new(lock(&self.shared.state))
    }

    /// Stops the thread; entries scheduled later are refused.
    pub(crate) fn shutdown(&self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.condvar.notify_one();
    }
}

impl<T: Send + 'static> Drop for Timer<T> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl<T> Shared<T> {
    fn run(&self) {
        let mut state = lock(&self.state);
        let mut due = Vec::new();
        loop {
            if state.shutdown {
                return;
            }
            let now = Instant::now();
            let now_nanos = nanos_since_epoch(now);
            while let Some(entry) = state.entries.first_entry() {
                if entry.key().at > now_nanos {
                    break;
                }
                due.push(entry.remove());
            }
            if !due.is_empty() {
                drop(state);
                for entry in due.drain(..) {
                    (self.fire)(entry);
                }
                state = lock(&self.state);
                continue;
            }
            state = match state.entries.first_key_value() {
                Some((key, _)) => {
                    let timeout = instant_at(key.at).saturating_duration_since(now);
                    wait_timeout(&self.condvar, state, timeout)
                }
                None => wait(&self.condvar, state),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn fires_in_due_order_and_cancel_removes() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let timer = Timer::new("test-timer".into(), move |n: u32| {
            lock(&tx).send(n).unwrap();
        });
        let start = Instant::now();
        timer
            .schedule(start + Duration::from_millis(30), 3)
            .unwrap();
        timer
            .schedule(start + Duration::from_millis(10), 1)
            .unwrap();
        let cancelled = timer
            .schedule(start + Duration::from_millis(20), 2)
            .unwrap();
        assert_eq!(timer.cancel(cancelled), Some(2));
        assert_eq!(rx.recv().unwrap(), 1);
        assert_eq!(rx.recv().unwrap(), 3);
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert_eq!(timer.len(), 0);
    }

    #[test]
    fn no_thread_until_first_schedule_and_refuses_after_shutdown() {
        let timer = Timer::new("test-timer".into(), |_: u32| {});
        assert!(lock(&timer.shared.state).started.is_none());
        timer.shutdown();
        assert_eq!(timer.schedule(Instant::now(), 7), Err(7));
    }
}
