//! `fork()` support: what the runtime needs so that a forked child can make and use new
//! pools, tokens and timers (the parent's are unusable there: their threads did not
//! follow).
//!
//! The C layer installs [`before_fork`], [`after_fork_in_parent`] and
//! [`after_fork_in_child`] with `pthread_atfork`. Before the fork, the forking thread
//! takes every process-wide lock the runtime has (the job memory depot, the parking
//! table, the deadline timer), so that no other thread holds one at the instant of the
//! fork; both processes then release them. The child also starts a new generation, which
//! tells the timers that their threads are gone (they start new ones on demand).

// Only the C layer installs the handlers; without it nothing calls them.
#![cfg_attr(not(feature = "capi"), allow(dead_code))]

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

/// The fork generation: 0 in the original process, one more in each forked child.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current fork generation.
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

thread_local! {
    /// The guards `before_fork` took, held across the fork by the forking thread.
    static HELD: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Takes every process-wide lock (in one fixed order).
pub(crate) fn before_fork() {
    let mut held: Vec<Box<dyn Any>> = Vec::new();
    held.push(crate::job::lock_depot_for_fork());
    held.extend(crate::parking::lock_all_for_fork());
    held.push(crate::cancel::lock_deadlines_for_fork());
    HELD.with(|h| *h.borrow_mut() = held);
}

/// Releases what `before_fork` took, in the parent.
pub(crate) fn after_fork_in_parent() {
    HELD.with(|h| h.borrow_mut().clear());
}

/// Starts a new generation and releases what `before_fork` took (the forking thread is
/// the child's only thread, and the owner of those locks).
pub(crate) fn after_fork_in_child() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
    HELD.with(|h| h.borrow_mut().clear());
}
