//! Cancellation tokens: a tree in which cancelling a token cancels its descendants, with
//! optional deadlines and a reason.
//!
//! `token` is the token itself; `jobs` holds a token's queued-job registrations, the one
//! part that every job submitted with a token touches twice (registered by its submitter,
//! deregistered by the worker that claims it), split into shards so that the two do not
//! contend. `kept` is the protocol by which a group keeps its jobs for its token's cancel
//! instead of registering them. `jobs` and `kept` are built under loom: their models are
//! at their bottoms.

mod jobs;
pub(crate) mod kept;
#[cfg(all(test, loom))]
mod model;
#[cfg(not(loom))]
mod token;

#[cfg(not(loom))]
pub(crate) use token::lock_deadlines_for_fork;
#[cfg(not(loom))]
pub(crate) use token::CancelTarget;
#[cfg(not(loom))]
pub use token::{CallbackKey, CancelReason, CancelToken};
