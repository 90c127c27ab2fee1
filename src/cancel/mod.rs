//! Cancellation tokens: a tree in which cancelling a token cancels its descendants, with
//! optional deadlines and a reason.
//!
//! `tree` is the tree's protocol: a node's reason, children, callbacks and waiters, and
//! the cancel that walks down; `token` is the token, a node whose payload is its queued
//! jobs and its deadline. `jobs` holds a token's queued-job registrations, the one
//! part that every job submitted with a token touches twice (registered by its submitter,
//! deregistered by the worker that claims it), split into shards so that the two do not
//! contend. `kept` is the protocol by which a group keeps its jobs for its token's cancel
//! instead of registering them. `tree`, `jobs` and `kept` are built under loom: their
//! models are at their bottoms.

mod jobs;
pub(crate) mod kept;
#[cfg(all(test, loom))]
mod model;
#[cfg(not(loom))]
mod token;
mod tree;

#[cfg(not(loom))]
pub(crate) use token::lock_deadlines_for_fork;
#[cfg(not(loom))]
pub(crate) use token::CancelTarget;
#[cfg(not(loom))]
pub use token::{CallbackKey, CancelToken};
pub use tree::CancelReason;
