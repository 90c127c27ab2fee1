//! Jobs: the heap-allocated unit of work behind every submit, the type-erased reference the
//! queues hold, and the handles users wait on.

pub(crate) mod state;

#[cfg(not(loom))]
pub(crate) mod alloc;
#[cfg(not(loom))]
mod heap;
#[cfg(not(loom))]
mod ptr;
#[cfg(not(loom))]
pub(crate) use alloc::lock_depot_for_fork;
#[cfg(not(loom))]
pub(crate) use heap::*;
#[cfg(not(loom))]
pub use heap::{Job, JobHandle, JobState};
#[cfg(not(loom))]
pub(crate) use ptr::{live_jobs, JobPtr, RefCounted};
