//! Groups: fan-out / fan-in, Go's `WaitGroup` and `errgroup` on the pool.
//!
//! `fanout` is the group itself; `completion` is its hand-made synchronisation, the count
//! of live jobs with the closed flag and the waiters of `next` and `wait`, built under
//! loom with its models at its bottom.

mod completion;
#[cfg(not(loom))]
mod fanout;

#[cfg(not(loom))]
pub use fanout::{Group, GroupOptions, Iter};
