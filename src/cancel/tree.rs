//! The cancellation tree: a node's reason, its children and callbacks, and the threads
//! blocked until it is cancelled. A token (`super::token`) is a node whose payload holds
//! its queued jobs and its deadline.
//!
//! # Protocol
//!
//! A node's reason is 0 while it is live, then set once, by its cancel, under its
//! `registrations` lock; the same critical section takes every child and callback out
//! and wakes the blocked waiters. A registration (a child, a callback, a waiter) looks at
//! the reason under that lock and is made only while it is 0. So either the registration
//! comes first, and the cancel (which follows it) finds it; or the cancel comes first,
//! and the registration, ordered after the reason's store by the lock, sees the reason
//! and acts on it itself: a child starts cancelled, a callback runs at once, a waiter
//! returns. A cancel never misses a registration, and each child and callback is reached
//! once: it leaves the node's registrations exactly once, under the lock, taken by the
//! cancel or removed by its owner (a dropped child, a removed callback).
//!
//! The cancel walks down outside the lock, after its own reason is stored and its
//! payload (the queued jobs) is cancelled. A child not yet reached reports its nearest
//! cancelled ancestor's reason ([`Node::reason_code`] walks up), and takes that reason
//! when the walk reaches it (the first reason stays), so every node of a subtree reports
//! one reason from the moment the cancel began.
//!
//! A parent holds only a `Weak` to each child: a child is dropped by its last handle, and
//! its drop removes its registration from the parent. A cancel that took the registration
//! first upgrades the `Weak` and cancels the child only if it is still alive; one that
//! comes later finds nothing. A child holds its parent (an `Arc`), so the walk up of
//! `reason_code` never meets a freed node.
//!
//! The models at the bottom race a parent's cancel with a child's creation, its drop, a
//! deadline's cancel of the child, a callback's registration and a waiter. They fail if a
//! registration looks at the reason outside the lock, if the cancel takes the
//! registrations before it stores the reason, or if it does not wake the waiters.

use std::fmt;
use std::sync::{Arc, Weak};
#[cfg(not(loom))]
use std::time::Instant;

use super::jobs::JobRegistrations;
use crate::slab::Slab;
use crate::sync::atomic::{AtomicU8, Ordering};
#[cfg(not(loom))]
use crate::sync::wait_timeout;
use crate::sync::{lock, wait, Condvar, Mutex};

/// Why a token (and the jobs under it) was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum CancelReason {
    /// `cancel()` was called on the token, the job or an ancestor.
    Cancelled = 1,
    /// The token's (or an ancestor's) deadline passed.
    DeadlineExceeded = 2,
    /// The pool shut down in `Cancel` mode.
    Shutdown = 3,
    /// A sibling in a fail-fast group failed.
    SiblingFailed = 4,
}

impl CancelReason {
    /// The reason with this code, if any (codes are stable: they cross the C ABI).
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => CancelReason::Cancelled,
            2 => CancelReason::DeadlineExceeded,
            3 => CancelReason::Shutdown,
            4 => CancelReason::SiblingFailed,
            _ => return None,
        })
    }

    /// The stable code of this reason (never 0).
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CancelReason::Cancelled => "cancelled",
            CancelReason::DeadlineExceeded => "deadline exceeded",
            CancelReason::Shutdown => "pool shut down",
            CancelReason::SiblingFailed => "a sibling job failed",
        })
    }
}

/// What a node carries besides the tree: told once when the node is cancelled.
pub(crate) trait Payload: Send + Sync + Sized {
    /// The node was cancelled with `reason`: its reason is stored (no registration can
    /// be made any more), its children not yet reached. Called once, outside any lock.
    fn cancelled(&self, reason: CancelReason);
}

type Callback = Box<dyn FnOnce(CancelReason) + Send>;

/// A registration other than a queued job's (those are in the payload).
enum Entry<P> {
    Child(Weak<Node<P>>),
    Callback(Callback),
}

/// A node's registrations other than its queued jobs', and its blocked waiters.
struct Registrations<P> {
    entries: Slab<Entry<P>>,
    blocked: usize,
}

/// A node of the cancellation tree.
///
/// # Memory ordering
///
/// `reason` is stored once, with `Release`, under `registrations`; every registration
/// reads it under the same lock, so the lock orders the two. Lock-free readers
/// (`reason_code`, the job registrations of `super::jobs`) read it with `Acquire`: a
/// reader that sees the reason sees what the canceller did before storing it.
pub(crate) struct Node<P> {
    /// 0 while live, then the `CancelReason` code; set once, under `registrations`, and
    /// before the payload is told (see `super::jobs` for why that order matters).
    reason: AtomicU8,
    /// Children, callbacks and the count of blocked waiters.
    registrations: Mutex<Registrations<P>>,
    condvar: Condvar,
    /// The parent and our key in its registrations, removed when we are dropped.
    parent: Option<(Arc<Node<P>>, usize)>,
    payload: P,
}

impl<P: Payload> Node<P> {
    /// A node with `payload`: a child of `parent` if given. A child of a cancelled parent
    /// starts cancelled with the parent's reason (its payload told at once).
    pub(crate) fn new(parent: Option<&Arc<Node<P>>>, payload: P) -> Arc<Self> {
        // A child of a cancelled subtree is not registered: it takes the reason below.
        let live_parent = parent.filter(|parent| parent.reason_code() == 0);
        let node = Arc::new_cyclic(|weak: &Weak<Node<P>>| {
            let parent = live_parent.and_then(|parent| {
                let mut registrations = lock(&parent.registrations);
                // Under the parent's lock (see the protocol): either its cancel finds us,
                // or it stored its reason before we locked, and we see it below.
                if parent.reason.load(Ordering::Acquire) != 0 {
                    return None;
                }
                let key = registrations.entries.insert(Entry::Child(weak.clone()));
                Some((Arc::clone(parent), key))
            });
            Node {
                reason: AtomicU8::new(0),
                registrations: Mutex::new(Registrations {
                    entries: Slab::EMPTY,
                    blocked: 0,
                }),
                condvar: Condvar::new(),
                parent,
                payload,
            }
        });
        // The parent may have been cancelled before or while we registered: take its
        // reason now (a cancel that found our registration is then a no-op on us).
        if let Some(reason) =
            parent.and_then(|parent| CancelReason::from_code(parent.reason_code()))
        {
            node.cancel(reason);
        }
        node
    }

    /// The payload.
    pub(crate) fn payload(&self) -> &P {
        &self.payload
    }

    /// Cancels this node and its subtree; false if it already reported a reason (its
    /// own, or an ancestor's whose cancel is on its way down: then that reason is the one
    /// set here, as the first reason stays).
    pub(crate) fn cancel(&self, reason: CancelReason) -> bool {
        let (entries, reason, first) = {
            let mut registrations = lock(&self.registrations);
            if self.reason.load(Ordering::Acquire) != 0 {
                return false;
            }
            let (reason, first) = match CancelReason::from_code(self.reason_code()) {
                Some(inherited) => (inherited, false),
                None => (reason, true),
            };
            self.reason.store(reason.code(), Ordering::Release);
            if registrations.blocked > 0 {
                self.condvar.notify_all();
            }
            let entries = std::mem::take(&mut registrations.entries);
            (entries, reason, first)
        };
        // After the reason's store: a registration that the payload's cancel misses sees
        // the reason and is refused (see `super::jobs`). The queued jobs end first.
        self.payload.cancelled(reason);
        for entry in entries.into_entries() {
            match entry {
                Entry::Child(child) => {
                    if let Some(child) = child.upgrade() {
                        child.cancel(reason);
                    }
                }
                Entry::Callback(callback) => callback(reason),
            }
        }
        first
    }

    /// Registers `callback`, to run with the reason on the thread that cancels the node;
    /// returns its key. If the node is already cancelled, runs it at once on this thread
    /// instead and returns `None`.
    pub(crate) fn on_cancel(
        &self,
        callback: impl FnOnce(CancelReason) + Send + 'static,
    ) -> Option<usize> {
        {
            let mut registrations = lock(&self.registrations);
            if self.reason.load(Ordering::Acquire) == 0 {
                return Some(
                    registrations
                        .entries
                        .insert(Entry::Callback(Box::new(callback))),
                );
            }
        }
        callback(CancelReason::from_code(self.reason_code()).unwrap_or(CancelReason::Cancelled));
        None
    }

    /// Registers a queued job in `jobs` (the payload's) unless the node is cancelled:
    /// then gives it back. The registration looks at our own reason under its shard's
    /// lock, and our cancel stores it under `registrations` (see `super::jobs`).
    pub(crate) fn register_job<T>(
        &self,
        jobs: &JobRegistrations<T>,
        hint: usize,
        entry: T,
    ) -> Result<usize, T> {
        jobs.register(hint, &self.reason, &self.registrations, entry)
    }

    /// Blocks until the node is cancelled (or an ancestor is); returns the reason.
    pub(crate) fn wait(&self) -> CancelReason {
        let mut registrations = lock(&self.registrations);
        registrations.blocked += 1;
        while self.reason_code() == 0 {
            registrations = wait(&self.condvar, registrations);
        }
        registrations.blocked -= 1;
        CancelReason::from_code(self.reason_code()).unwrap_or(CancelReason::Cancelled)
    }

    /// Blocks until the node is cancelled or `deadline` passes; returns the reason, or
    /// `None` on timeout.
    #[cfg(not(loom))]
    pub(crate) fn wait_until(&self, deadline: Instant) -> Option<CancelReason> {
        let mut registrations = lock(&self.registrations);
        registrations.blocked += 1;
        loop {
            if self.reason_code() != 0 {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            registrations = wait_timeout(&self.condvar, registrations, deadline - now);
        }
        registrations.blocked -= 1;
        CancelReason::from_code(self.reason_code())
    }
}

impl<P> Node<P> {
    /// Our reason code, or the nearest cancelled ancestor's (0: live). A cancel sets the
    /// node's own reason before it walks down to its children, so a worker that has
    /// seen an ancestor's cancel cannot then start a job of a descendant not yet reached.
    #[inline]
    pub(crate) fn reason_code(&self) -> u8 {
        let mut node = self;
        loop {
            let code = node.reason.load(Ordering::Acquire);
            if code != 0 {
                return code;
            }
            match &node.parent {
                Some((parent, _)) => node = parent,
                None => return 0,
            }
        }
    }

    /// Removes a registration (a child's, a callback's) that a cancel has not taken;
    /// returns whether it was still there.
    pub(crate) fn deregister(&self, key: usize) -> bool {
        // Dropped outside the lock: a child's `Weak` or a callback.
        let entry = lock(&self.registrations).entries.remove(key);
        entry.is_some()
    }

    /// Registrations currently held (children and callbacks).
    #[cfg(any(test, loom))]
    pub(crate) fn registrations(&self) -> usize {
        lock(&self.registrations).entries.len()
    }
}

impl<P> Drop for Node<P> {
    fn drop(&mut self) {
        if let Some((parent, key)) = self.parent.take() {
            parent.deregister(key);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;

    /// Counts how many times each node's payload was told of a cancel, and the reason.
    struct Told {
        times: AtomicUsize,
        reason: AtomicU8,
    }

    impl Payload for Told {
        fn cancelled(&self, reason: CancelReason) {
            self.times.fetch_add(1, Ordering::SeqCst);
            self.reason.store(reason.code(), Ordering::SeqCst);
        }
    }

    type TestNode = Node<Told>;

    fn node(parent: Option<&Arc<TestNode>>) -> Arc<TestNode> {
        Node::new(
            parent,
            Told {
                times: AtomicUsize::new(0),
                reason: AtomicU8::new(0),
            },
        )
    }

    /// Told once, with the reason the node reports.
    #[track_caller]
    fn assert_cancelled_once(node: &TestNode) {
        assert_eq!(node.payload().times.load(Ordering::SeqCst), 1, "told once");
        let told = node.payload().reason.load(Ordering::SeqCst);
        assert_eq!(told, node.reason.load(Ordering::SeqCst));
        assert_eq!(told, node.reason_code());
    }

    /// A root's cancel races the creation of a child (kept) and of a grandchild under a
    /// child made before, and the drop of another child: every node alive after the
    /// cancel is cancelled, exactly once, with the root's reason; nothing stays
    /// registered with a cancelled node; the dropped child deregistered or was taken.
    #[test]
    fn cancel_races_child_creation_and_drop() {
        crate::pool::sleep::loom_tests::model(|| {
            let root = node(None);
            let child = node(Some(&root));
            let creator = {
                let root = Arc::clone(&root);
                loom::thread::spawn(move || node(Some(&root)))
            };
            let grand_creator = {
                let child = Arc::clone(&child);
                loom::thread::spawn(move || node(Some(&child)))
            };
            let dropper = {
                let root = Arc::clone(&root);
                loom::thread::spawn(move || drop(node(Some(&root))))
            };
            assert!(root.cancel(CancelReason::Shutdown));
            let late = creator.join().unwrap();
            let grandchild = grand_creator.join().unwrap();
            dropper.join().unwrap();
            for node in [&root, &child, &late, &grandchild] {
                assert_cancelled_once(node);
                assert_eq!(node.reason_code(), CancelReason::Shutdown.code());
                assert_eq!(
                    node.registrations(),
                    0,
                    "a registration outlived the cancel"
                );
            }
            assert!(!late.cancel(CancelReason::Cancelled), "cancelled already");
        });
    }

    /// A deadline's cancel of a child (the timer thread) races its parent's cancel: the
    /// child is cancelled once, with one reason, which both it and its own child report;
    /// a callback registered while they race runs exactly once, with that reason.
    #[test]
    fn two_cancels_race_and_the_first_reason_stays() {
        crate::pool::sleep::loom_tests::model(|| {
            let root = node(None);
            let child = node(Some(&root));
            let grandchild = node(Some(&child));
            let calls = Arc::new(AtomicUsize::new(0));
            let timer = {
                let child = Arc::clone(&child);
                loom::thread::spawn(move || child.cancel(CancelReason::DeadlineExceeded))
            };
            let registrar = {
                let grandchild = Arc::clone(&grandchild);
                let calls = Arc::clone(&calls);
                loom::thread::spawn(move || {
                    grandchild.on_cancel(move |reason| {
                        calls.fetch_add(1 + 10 * usize::from(reason.code()), Ordering::SeqCst);
                    })
                })
            };
            let root_first = root.cancel(CancelReason::Cancelled);
            let timer_first = timer.join().unwrap();
            registrar.join().unwrap();
            assert!(root_first, "the root had no other cancel");
            for node in [&child, &grandchild] {
                assert_cancelled_once(node);
            }
            let reason = child.reason_code();
            assert_eq!(grandchild.reason_code(), reason);
            assert_eq!(timer_first, reason == CancelReason::DeadlineExceeded.code());
            assert_eq!(calls.load(Ordering::SeqCst), 1 + 10 * usize::from(reason));
        });
    }

    /// A thread blocked in `wait` on a grandchild is woken by the root's cancel (loom
    /// reports the deadlock if the wake is lost).
    #[test]
    fn a_waiter_is_woken_by_an_ancestors_cancel() {
        crate::pool::sleep::loom_tests::model(|| {
            let root = node(None);
            let child = node(Some(&root));
            let waiter = {
                let child = Arc::clone(&child);
                loom::thread::spawn(move || child.wait())
            };
            root.cancel(CancelReason::Cancelled);
            assert_eq!(waiter.join().unwrap(), CancelReason::Cancelled);
        });
    }
}
