//! Panic containment: user closures run inside [`halt_unwinding`], scheduler internals
//! under an [`AbortIfPanic`] guard.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

/// Runs `f`, turning a panic into `Err(payload)`.
///
/// The closure is asserted unwind-safe: a job that panics is finished as `Panicked` and its
/// captured state is dropped, never observed half-updated by the runtime.
#[inline]
pub(crate) fn halt_unwinding<F: FnOnce() -> R, R>(f: F) -> Result<R, Box<dyn Any + Send>> {
    panic::catch_unwind(AssertUnwindSafe(f))
}

/// The text of a panic payload (`&str` and `String` payloads; a placeholder otherwise).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&'static str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Aborts the process if dropped during unwinding: a scheduler internal that panics
/// half-way through a protocol would leave the pool corrupt, so it must not unwind.
/// Forget the guard (`std::mem::forget`) once the protected section is over.
pub(crate) struct AbortIfPanic;

impl Drop for AbortIfPanic {
    fn drop(&mut self) {
        eprintln!("jobrunner: a scheduler internal panicked; aborting");
        std::process::abort();
    }
}

/// Resumes a panic captured by [`halt_unwinding`].
pub(crate) fn resume(payload: Box<dyn Any + Send>) -> ! {
    panic::resume_unwind(payload)
}
