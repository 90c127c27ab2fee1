//! The async-signal-safe half of `jr_token_cancel`.
//!
//! A signal handler may not take a lock or allocate, and cancelling a token does both (it
//! ends queued jobs, runs callbacks). So `jr_token_cancel` only marks the token (which
//! `jr_token_is_cancelled` reads at once), pushes it on a lock-free hand-off stack with a
//! reference held (`crate::handoff`, which has the loom model), and writes to an
//! eventfd. A helper thread, started with the first token, reads the eventfd, takes the
//! stack, and does the real cancel. Any other call on a marked token from normal context
//! (submit with it, wait on it, make a child of it...) first completes the cancel itself
//! (`settle`), so a thread that cancels and then uses the token sees the full effect in
//! order.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use crate::handoff::{HandOff, Marked};
use crate::CancelToken;

/// What a `jr_token` handle shares with the signal helper: the token, marked by
/// `jr_token_cancel`.
pub(crate) type TokenShared = Marked<CancelToken>;

/// Tokens marked by `jr_token_cancel` and not yet cancelled by the helper.
static PENDING: HandOff<CancelToken> = HandOff::new();

/// The helper's eventfd, or -1 before the helper starts.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// Held (true) by the thread starting the helper: a flag rather than a lock, so that a
/// forked child can reset it (a lock held by a parent thread at the fork would stay held).
static STARTING: AtomicBool = AtomicBool::new(false);

impl Marked<CancelToken> {
    /// Whether the token is cancelled, or marked for it by `jr_token_cancel`.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.is_marked() || self.value.is_cancelled()
    }

    /// Completes a cancel requested by [`Marked::cancel_from_anywhere`], from normal
    /// context; returns the token.
    pub(crate) fn settle(&self) -> &CancelToken {
        if self.is_marked() {
            // A no-op if the helper (or an earlier reason) got there first.
            self.value.cancel();
        }
        &self.value
    }

    /// Cancels the token without locking or allocating: marks it and hands it to the
    /// helper thread. Async-signal-safe.
    pub(crate) fn cancel_from_anywhere(self: &Arc<Self>) {
        if !self.mark() {
            return;
        }
        let fd = WAKE_FD.load(Ordering::Acquire);
        if fd < 0 {
            // No helper (it could not start): the mark alone is all a handler can do;
            // `settle` completes it at the next use from normal context.
            return;
        }
        PENDING.push(self);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to an fd we own; `write` is
        // async-signal-safe. A failed write (the counter saturated) still leaves a
        // wake-up pending, so it needs no handling.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

/// Starts the helper thread if it is not running. Normal context only.
pub(crate) fn ensure_helper() {
    if WAKE_FD.load(Ordering::Acquire) >= 0 {
        return;
    }
    while STARTING
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        if WAKE_FD.load(Ordering::Acquire) >= 0 {
            return;
        }
        std::thread::yield_now();
    }
    if WAKE_FD.load(Ordering::Acquire) < 0 {
        start_helper();
    }
    STARTING.store(false, Ordering::Release);
}

fn start_helper() {
    // SAFETY: a plain system call; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("jobrunner-signal".into())
        .spawn(move || helper(fd));
    match spawned {
        Ok(_) => WAKE_FD.store(fd, Ordering::Release),
        // SAFETY: the fd is ours and unused.
        Err(_) => unsafe {
            libc::close(fd);
        },
    }
}

fn helper(fd: i32) {
    loop {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live local from an fd we own.
        let n = unsafe { libc::read(fd, (&mut count as *mut u64).cast(), 8) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        for token in PENDING.take_all() {
            token.value.cancel();
        }
    }
}

/// In a forked child: the helper thread is gone. Forget its fd (closing it: `close` is
/// async-signal-safe) and the pending entries (their references leak, as the parent's
/// handles do), so that the child's first token starts a helper of its own.
pub(crate) fn after_fork() {
    let fd = WAKE_FD.swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        // SAFETY: the child's copy of the helper's fd, which nothing else uses.
        unsafe { libc::close(fd) };
    }
    PENDING.forget_all();
    STARTING.store(false, Ordering::Release);
}
