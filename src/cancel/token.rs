//! The token: a handle to a node of the cancellation tree (`super::tree`: its children,
//! callbacks and waiters), whose payload is its deadline and its queued jobs, registered
//! in its `JobRegistrations` (`super::jobs`).

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;

use super::jobs::{address_hint, JobRegistrations};
use super::tree::{CancelReason, Node, Payload};
use crate::job::{JobPtr, RefCounted};
use crate::sync::{lock, Mutex};
use crate::timer::deadline_after;
use crate::timer::{Timer, TimerKey};

/// Something that ends when a token it is registered with is cancelled (a queued job).
pub(crate) trait CancelTarget: RefCounted + Send + Sync {
    fn cancel_from_token(&self, reason: CancelReason);
}

/// The key of a callback registered with [`CancelToken::on_cancel`], to remove it with
/// [`CancelToken::remove_callback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackKey(usize);

/// What a token's node carries besides the tree: its queued jobs, in shards of their own
/// (registered by submitters and deregistered by workers without taking the node's
/// lock), and its deadline.
struct Extra {
    jobs: JobRegistrations<JobPtr<dyn CancelTarget>>,
    deadline: Mutex<Deadline>,
}

impl Payload for Extra {
    fn cancelled(&self, reason: CancelReason) {
        // The queued jobs end first, then the deadline stops mattering.
        self.jobs.drain(|target| target.cancel_from_token(reason));
        lock(&self.deadline).cancel_timer();
    }
}

impl Drop for Extra {
    fn drop(&mut self) {
        lock(&self.deadline).cancel_timer();
    }
}

type Inner = Node<Extra>;

/// A token's own deadline and its entry in [`DEADLINES`] while it is pending.
#[derive(Default)]
struct Deadline {
    at: Option<Instant>,
    key: Option<TimerKey>,
}

impl Deadline {
    /// Takes the deadline out of the timer, if it is there.
    fn cancel_timer(&mut self) {
        if let Some(key) = self.key.take() {
            DEADLINES.cancel(key);
        }
    }
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
        let extra = Extra {
            jobs: JobRegistrations::new(),
            deadline: Mutex::new(Deadline::default()),
        };
        let token = CancelToken {
            inner: Node::new(parent.map(|parent| &parent.inner), extra),
        };
        // Refused if the token is born cancelled (its parent was).
        if let Some(deadline) = deadline {
            token.set_deadline(deadline);
        }
        token
    }

    /// Sets this token's own deadline to `deadline`, replacing any earlier one (a
    /// deadline already passed cancels the token at once with `DeadlineExceeded`).
    /// Returns false, changing nothing, if the token is already cancelled.
    pub fn set_deadline(&self, deadline: Instant) -> bool {
        let mut own = lock(&self.inner.payload().deadline);
        if self.is_cancelled() {
            return false;
        }
        own.cancel_timer();
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
        lock(&self.inner.payload().deadline).at
    }

    /// Runs `callback` with the reason once the token is cancelled: at once on this thread
    /// if it already is, otherwise on the thread that cancels it. Keep callbacks short:
    /// they run inside `cancel()`.
    pub fn on_cancel(&self, callback: impl FnOnce(CancelReason) + Send + 'static) -> CallbackKey {
        CallbackKey(self.inner.on_cancel(callback).unwrap_or(usize::MAX))
    }

    /// Removes a callback that has not run; returns whether it was still registered.
    pub fn remove_callback(&self, key: CallbackKey) -> bool {
        self.inner.deregister(key.0)
    }

    /// Blocks until the token is cancelled.
    pub fn wait(&self) -> CancelReason {
        self.inner.wait()
    }

    /// Blocks until the token is cancelled or `timeout` passes; returns the reason, or
    /// `None` on timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<CancelReason> {
        self.inner.wait_until(deadline_after(timeout))
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
            .register_job(&self.inner.payload().jobs, hint, target)
            .ok()
    }

    /// Removes a registration made by `register` (a no-op once the token was cancelled:
    /// cancelling took every registration out).
    pub(crate) fn deregister(&self, key: usize) {
        // Dropped outside the shard's lock: a job's last reference may go with it.
        drop(self.inner.payload().jobs.deregister(key));
    }

    /// Registrations currently held (children, queued jobs, callbacks).
    #[cfg(test)]
    pub(crate) fn registrations(&self) -> usize {
        self.inner.registrations() + self.inner.payload().jobs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
