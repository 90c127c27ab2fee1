//! Cancellation tokens: a tree in which cancelling a token cancels its descendants, with
//! optional deadlines and a reason.

mod token;

pub(crate) use token::lock_deadlines_for_fork;
pub(crate) use token::CancelTarget;
pub use token::{CallbackKey, CancelReason, CancelToken};
