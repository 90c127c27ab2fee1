//! The token: a node of the cancellation tree, its children, callbacks, waiters and
//! deadline. Its queued jobs are registered in its `JobRegistrations` (`super::jobs`).

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;

use super::jobs::{address_hint, JobRegistrations};
use crate::job::{JobPtr, RefCounted};
use crate::slab::Slab;
use crate::sync::atomic::{AtomicU8, Ordering};
use crate::sync::{lock, wait, wait_timeout, Condvar, Mutex};
use crate::timer::deadline_after;
use crate::timer::{Timer, TimerKey};

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

/// Something that ends when a token it is registered with is cancelled (a queued job).
pub(crate) trait CancelTarget: RefCounted + Send + Sync {
    fn cancel_from_token(&self, reason: CancelReason);
}

/// The key of a callback registered with [`CancelToken::on_cancel`], to remove it with
/// [`CancelToken::remove_callback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackKey(usize);

type Callback = Box<dyn FnOnce(CancelReason) + Send>;

/// A registration other than a queued job's (those are in `Inner::jobs`).
enum Entry {
    Child(Weak<Inner>),
    Callback(Callback),
}

/// A token's registrations other than its queued jobs', and its blocked waiters.
#[derive(Default)]
struct Registrations {
    entries: Slab<Entry>,
    blocked: usize,
}

struct Inner {
    /// 0 while live, then the `CancelReason` code; set once, under `registrations`, and
    /// before `jobs` is drained (see `super::jobs` for why that order matters).
    reason: AtomicU8,
    /// Children, callbacks and the count of blocked waiters.
    registrations: Mutex<Registrations>,
    /// The queued jobs submitted with this token, in shards of their own: registered by
    /// submitters and deregistered by workers without taking `registrations`.
    jobs: JobRegistrations<JobPtr<dyn CancelTarget>>,
    condvar: Condvar,
    /// The parent and our key in its registrations, removed when we are dropped.
    parent: Option<(Arc<Inner>, usize)>,
    deadline: Mutex<Deadline>,
}

/// A token's own deadline and its entry in [`DEADLINES`] while it is pending.
#[derive(Default)]
struct Deadline {
    at: Option<Instant>,
    key: Option<TimerKey>,
}

/// The process-wide timer that fires token deadlines.
static DEADLINES: Lazy<Timer<Weak<Inner>>> = Lazy::new(|| {
    Timer::new("jobrunner-deadlines".into(), |token: Weak<Inner>| {
        if let Some(token) = token.upgrade() {
            token.cancel(CancelReason::DeadlineExceeded);
        }
    })
});

/// Holds the deadline timer across a `fork()` (see `process`).
#[cfg_attr(not(feature = "capi"), allow(dead_code))]
pub(crate) fn lock_deadlines_for_fork() -> Box<dyn std::any::Any> {
    DEADLINES.lock_for_fork()
}

/// A cancellation token: a cheap, cloneable handle to a node of a cancellation tree.
///
/// Cancelling a token cancels all its descendants (once, with the first reason given), ends
/// every still-queued job submitted with it or a descendant as `Cancelled` without running
/// it, and lets running jobs see `ctx.is_cancelled()`. A token can carry a deadline, fired
/// by a shared timer thread that exists only once some deadline was set.
///
/// # Examples
///
/// ```
/// use jobrunner::{CancelReason, CancelToken};
///
/// let request = CancelToken::new();
/// let step = request.child();
/// request.cancel();
/// assert_eq!(step.reason(), Some(CancelReason::Cancelled));
/// ```
#[derive(Clone)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken")
            .field("reason", &self.reason())
            .field("deadline", &self.deadline())
            .finish()
    }
}

impl Default for CancelToken {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelToken {
    /// A new root token.
    pub fn new() -> Self {
        Self::build(None, None)
    }

    /// A new root token cancelled with `DeadlineExceeded` at `deadline`.
    pub fn with_deadline(deadline: Instant) -> Self {
        Self::build(None, Some(deadline))
    }

    /// A new root token cancelled with `DeadlineExceeded` after `timeout`.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self::with_deadline(deadline_after(timeout))
    }

    /// A child: cancelled when this token is, and cancellable on its own.
    pub fn child(&self) -> Self {
        Self::build(Some(self), None)
    }

    /// A child that is also cancelled with `DeadlineExceeded` at `deadline`.
    pub fn child_with_deadline(&self, deadline: Instant) -> Self {
        Self::build(Some(self), Some(deadline))
    }

    /// A child that is also cancelled with `DeadlineExceeded` after `timeout`.
    pub fn child_with_timeout(&self, timeout: Duration) -> Self {
        self.child_with_deadline(deadline_after(timeout))
    }

    fn build(parent: Option<&CancelToken>, deadline: Option<Instant>) -> Self {
        let inherited = parent.and_then(|p| p.reason());
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let parent = match (parent, inherited) {
                (Some(parent), None) => {
                    let mut registrations = lock(&parent.inner.registrations);
                    if parent.inner.reason.load(Ordering::Acquire) == 0 {
                        let key = registrations.entries.insert(Entry::Child(weak.clone()));
                        Some((Arc::clone(&parent.inner), key))
                    } else {
                        None
                    }
                }
                _ => None,
            };
            Inner {
                reason: AtomicU8::new(0),
                registrations: Mutex::new(Registrations::default()),
                jobs: JobRegistrations::new(),
                condvar: Condvar::new(),
                parent,
                deadline: Mutex::new(Deadline::default()),
            }
        });
        let token = CancelToken { inner };
        // The parent may have been cancelled before or while we registered.
        if let Some(reason) = parent.and_then(|p| p.reason()) {
            token.inner.cancel(reason);
        } else if let Some(deadline) = deadline {
            token.set_deadline(deadline);
        }
        token
    }

    /// Sets this token's own deadline to `deadline`, replacing any earlier one (a
    /// deadline already passed cancels the token at once with `DeadlineExceeded`).
    /// Returns false, changing nothing, if the token is already cancelled.
    pub fn set_deadline(&self, deadline: Instant) -> bool {
        let mut own = lock(&self.inner.deadline);
        if self.is_cancelled() {
            return false;
        }
        if let Some(key) = own.key.take() {
            DEADLINES.cancel(key);
        }
        own.at = Some(deadline);
        if deadline <= Instant::now() {
            drop(own);
            self.inner.cancel(CancelReason::DeadlineExceeded);
            return true;
        }
        // A timer that cannot start its thread leaves the deadline unenforced by the
        // timer; `wait_timeout` callers still see it through `deadline()`.
        own.key = DEADLINES
            .schedule(deadline, Arc::downgrade(&self.inner))
            .ok();
        true
    }

    /// [`CancelToken::set_deadline`] at `timeout` from now.
    pub fn set_timeout(&self, timeout: Duration) -> bool {
        self.set_deadline(deadline_after(timeout))
    }

    /// Cancels this token and its descendants with `CancelReason::Cancelled`. Returns
    /// false if it was already cancelled (the first reason stays).
    pub fn cancel(&self) -> bool {
        self.inner.cancel(CancelReason::Cancelled)
    }

    /// Cancels this token and its descendants with the given reason.
    pub fn cancel_with(&self, reason: CancelReason) -> bool {
        self.inner.cancel(reason)
    }

    /// Whether the token has been cancelled (or an ancestor has: see [`reason`]).
    ///
    /// [`reason`]: CancelToken::reason
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.inner.reason_code() != 0
    }

    /// Why the token was cancelled, or `None` while it is live.
    ///
    /// A cancel reaches a token's descendants one after the other, but each of them
    /// reports it from the moment the cancel began: a descendant not yet reached answers
    /// with its nearest cancelled ancestor's reason, the one it is about to get.
    pub fn reason(&self) -> Option<CancelReason> {
        CancelReason::from_code(self.inner.reason_code())
    }

    /// This token's own deadline, if it was given one.
    pub fn deadline(&self) -> Option<Instant> {
        lock(&self.inner.deadline).at
    }

    /// Runs `callback` with the reason once the token is cancelled: at once on this thread
    /// if it already is, otherwise on the thread that cancels it. Keep callbacks short:
    /// they run inside `cancel()`.
    pub fn on_cancel(&self, callback: impl FnOnce(CancelReason) + Send + 'static) -> CallbackKey {
        {
            let mut registrations = lock(&self.inner.registrations);
            if self.inner.reason.load(Ordering::Acquire) == 0 {
                return CallbackKey(
                    registrations
                        .entries
                        .insert(Entry::Callback(Box::new(callback))),
                );
            }
        }
        callback(self.reason().unwrap_or(CancelReason::Cancelled));
        CallbackKey(usize::MAX)
    }

    /// Removes a callback that has not run; returns whether it was still registered.
    pub fn remove_callback(&self, key: CallbackKey) -> bool {
        self.inner.deregister(key.0)
    }

    /// Blocks until the token is cancelled.
    pub fn wait(&self) -> CancelReason {
        let mut registrations = lock(&self.inner.registrations);
        registrations.blocked += 1;
        while !self.is_cancelled() {
            registrations = wait(&self.inner.condvar, registrations);
        }
        registrations.blocked -= 1;
        self.reason().unwrap_or(CancelReason::Cancelled)
    }

    /// Blocks until the token is cancelled or `timeout` passes; returns the reason, or
    /// `None` on timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<CancelReason> {
        let deadline = deadline_after(timeout);
        let mut registrations = lock(&self.inner.registrations);
        registrations.blocked += 1;
        loop {
            if self.is_cancelled() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            registrations = wait_timeout(&self.inner.condvar, registrations, deadline - now);
        }
        registrations.blocked -= 1;
        self.reason()
    }

    /// Whether two handles are the same token.
    pub fn same_as(&self, other: &CancelToken) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Registers a queued job; `None` if the token is already cancelled (the caller then
    /// cancels the job itself).
    pub(crate) fn register(&self, target: JobPtr<dyn CancelTarget>) -> Option<usize> {
        let hint = address_hint(&*target as *const dyn CancelTarget as *const () as usize);
        // A refused registration is dropped here, outside the shard's lock.
        self.inner
            .jobs
            .register(hint, &self.inner.reason, &self.inner.registrations, target)
            .ok()
    }

    /// Removes a registration made by `register` (a no-op once the token was cancelled:
    /// cancelling took every registration out).
    pub(crate) fn deregister(&self, key: usize) {
        // Dropped outside the shard's lock: a job's last reference may go with it.
        drop(self.inner.jobs.deregister(key));
    }

    /// Registrations currently held (children, queued jobs, callbacks).
    #[cfg(test)]
    pub(crate) fn registrations(&self) -> usize {
        lock(&self.inner.registrations).entries.len() + self.inner.jobs.len()
    }
}

impl Inner {
    /// Our reason code, or the nearest cancelled ancestor's (0: live). A cancel sets the
    /// token's own reason before it walks down to its children, so a worker that has
    /// seen an ancestor's cancel cannot then start a job of a descendant not yet reached.
    #[inline]
    fn reason_code(&self) -> u8 {
        let mut token = self;
        loop {
            let code = token.reason.load(Ordering::Acquire);
            if code != 0 {
                return code;
            }
            match &token.parent {
                Some((parent, _)) => token = parent,
                None => return 0,
            }
        }
    }

    /// Cancels this token and its subtree; false if it already reported a reason (its
    /// own, or an ancestor's whose cancel is on its way down: then that reason is the one
    /// set here, as the first reason stays).
    fn cancel(&self, reason: CancelReason) -> bool {
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
        // After the reason's store: a registration that the drain misses sees the reason
        // and is refused (see `super::jobs`). The queued jobs end first.
        self.jobs.drain(|target| target.cancel_from_token(reason));
        if let Some(key) = lock(&self.deadline).key.take() {
            DEADLINES.cancel(key);
        }
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

    fn deregister(&self, key: usize) -> bool {
        // Dropped outside the lock: a child's `Weak` or a callback (queued jobs are in
        // `jobs`, not here).
        let entry = lock(&self.registrations).entries.remove(key);
        entry.is_some()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some((parent, key)) = self.parent.take() {
            parent.deregister(key);
        }
        if let Some(key) = lock(&self.deadline).key.take() {
            DEADLINES.cancel(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn cancel_propagates_down_not_up() {
        let root = CancelToken::new();
        let child = root.child();
        let grandchild = child.child();
        let sibling = root.child();
        assert!(child.cancel());
        assert!(!child.cancel(), "a second cancel is a no-op");
        assert!(grandchild.is_cancelled());
        assert!(!root.is_cancelled());
        assert!(!sibling.is_cancelled());
        root.cancel_with(CancelReason::Shutdown);
        assert_eq!(sibling.reason(), Some(CancelReason::Shutdown));
        assert_eq!(
            child.reason(),
            Some(CancelReason::Cancelled),
            "first reason stays"
        );
    }

    #[test]
    fn child_of_cancelled_parent_starts_cancelled() {
        let root = CancelToken::new();
        root.cancel_with(CancelReason::SiblingFailed);
        assert_eq!(root.child().reason(), Some(CancelReason::SiblingFailed));
    }

    #[test]
    fn dropped_children_deregister() {
        let root = CancelToken::new();
        for _ in 0..1000 {
            let _ = root.child();
        }
        assert_eq!(root.registrations(), 0);
    }

    #[test]
    fn callbacks_run_once_and_can_be_removed() {
        let token = CancelToken::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        token.on_cancel(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let removed = token.on_cancel(|_| panic!("removed callbacks never run"));
        assert!(token.remove_callback(removed));
        token.cancel();
        token.cancel();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let counted = Arc::clone(&calls);
        token.on_cancel(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "runs at once when already cancelled"
        );
    }

    #[test]
    fn deadline_fires_and_wakes_waiter() {
        let token = CancelToken::with_timeout(Duration::from_millis(20));
        let start = Instant::now();
        assert_eq!(token.wait(), CancelReason::DeadlineExceeded);
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(19), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }

    #[test]
    fn set_deadline_replaces_the_deadline_and_refuses_once_cancelled() {
        let token = CancelToken::with_timeout(Duration::from_secs(3600));
        let child = token.child();
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(token.set_deadline(soon));
        assert_eq!(token.deadline(), Some(soon));
        assert_eq!(child.wait(), CancelReason::DeadlineExceeded);
        assert!(Instant::now() >= soon);
        assert!(
            !token.set_timeout(Duration::from_secs(1)),
            "already cancelled"
        );
        assert_eq!(token.deadline(), Some(soon));

        // A later deadline replaces an earlier one: the token outlives the first.
        let token = CancelToken::with_timeout(Duration::from_millis(10));
        assert!(token.set_timeout(Duration::from_secs(3600)));
        assert_eq!(token.wait_timeout(Duration::from_millis(100)), None);
        // A deadline already passed cancels at once.
        assert!(token.set_deadline(Instant::now()));
        assert_eq!(token.reason(), Some(CancelReason::DeadlineExceeded));
    }

    #[test]
    fn wait_timeout_times_out_on_live_token() {
        let token = CancelToken::new();
        assert_eq!(token.wait_timeout(Duration::from_millis(5)), None);
        assert_eq!(
            CancelToken::with_deadline(Instant::now()).reason(),
            Some(CancelReason::DeadlineExceeded)
        );
    }
}
