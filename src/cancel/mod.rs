//! Cancellation tokens: a tree in which cancelling a token cancels its descendants, with
//! optional deadlines and a reason.
//!
//! `token` is the token itself; `jobs` holds a token's queued-job registrations, the one
//! part that every job submitted with a token touches twice (registered by its submitter,
//! deregistered by the worker that claims it), split into shards so that the two do not
//! contend. `jobs` is built under loom: its model is at its bottom.

mod jobs;
#[cfg(not(loom))]
mod token;

#[cfg(not(loom))]
pub(crate) use token::lock_deadlines_for_fork;
#[cfg(not(loom))]
pub(crate) use token::CancelTarget;
#[cfg(not(loom))]
pub use token::{CallbackKey, CancelReason, CancelToken};
