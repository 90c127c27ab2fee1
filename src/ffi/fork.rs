//! `fork()`: a child process inherits the parent's memory but none of its threads, so
//! the parent's pools have no workers there, and a lock a parent thread held at the fork
//! stays held forever.
//!
//! The policy: every handle records the fork generation it was made in, and a
//! `pthread_atfork` child handler starts a new generation. A handle from an older
//! generation gives `JR_E_FORKED` on every call (including its `*_free`, which leaks it
//! on purpose: freeing could take a lock a vanished thread held). `jr_pool_global()` in
//! the child makes the child its own global pool on first use. This is what Python's
//! `multiprocessing` (fork start method) needs: the child makes new handles and never
//! touches the parent's.

use std::sync::Once;

/// The generation handles made now belong to.
pub(crate) fn generation() -> u64 {
    crate::process::generation()
}

/// Installs the fork handler, once per process (idempotent, cheap after the first call).
/// Called by every function that makes a handle.
pub(crate) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: registers handlers that only take and release our own locks, store
        // atomics and close an fd: what a handler run around `fork()` may do.
        let rc = unsafe { libc::pthread_atfork(Some(before), Some(in_parent), Some(in_child)) };
        // Only ENOMEM can fail it; without the handler a child would hang on the
        // parent's pools, so say so rather than fail silently.
        if rc != 0 {
            eprintln!(
                "jobrunner: pthread_atfork failed ({rc}): fork() children must not use the library"
            );
        }
    });
}

extern "C" fn before() {
    crate::process::before_fork();
}

extern "C" fn in_parent() {
    crate::process::after_fork_in_parent();
}

extern "C" fn in_child() {
    crate::process::after_fork_in_child();
    super::signal::after_fork();
    super::pool::after_fork();
}
