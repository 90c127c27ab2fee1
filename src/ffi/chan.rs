//! `jr_chan`: bounded MPMC channels of `void *` items, shared by every language.

use std::ffi::c_void;

use super::job::jr_free_fn;
use super::jr_status;
use super::status::invalid;
use super::token::{jr_token, TokenHandle};
use super::{fork, status, timeout_of, write_out, Handle, Kind};
use crate::{Channel, RecvError, SendError};

/// A bounded multi-producer, multi-consumer FIFO channel of `void *` items. A send into
/// a full channel, or a receive from an empty one, waits; inside a job, the pool starts
/// a spare worker meanwhile if too few would be left running, so that producer and
/// consumer jobs on a small pool still meet. Made by `jr_chan_new`, freed by
/// `jr_chan_free` (items still buffered are destroyed with its `item_free`).
pub struct jr_chan {
    _opaque: [u8; 0],
}

/// An item in the channel: destroyed with the channel's `item_free` if nobody takes it.
pub(crate) struct Item {
    ptr: *mut c_void,
    free: jr_free_fn,
}

// SAFETY: the header tells callers that items cross threads: a sender's item is
// received, or destroyed, on any thread.
unsafe impl Send for Item {}

impl Item {
    /// Gives the pointer to its new owner: the item will not be destroyed.
    pub(crate) fn take(self) -> *mut c_void {
        let ptr = self.ptr;
        std::mem::forget(self);
        ptr
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        if let (Some(free), false) = (self.free, self.ptr.is_null()) {
            // SAFETY: the caller's destructor, called once for an item nobody took.
            unsafe { free(self.ptr) };
        }
    }
}

pub(crate) struct ChanHandle {
    channel: Channel<Item>,
    item_free: jr_free_fn,
    /// A stream's channel lent to its producer for the call: not freed by
    /// `jr_chan_free`.
    borrowed: bool,
}

impl ChanHandle {
    /// The channel.
    pub(crate) fn channel(&self) -> &Channel<Item> {
        &self.channel
    }

    /// A handle to `channel` lent for a call (see `borrowed`).
    pub(crate) fn borrowed(channel: Channel<Item>, item_free: jr_free_fn) -> Self {
        ChanHandle {
            channel,
            item_free,
            borrowed: true,
        }
    }
}

impl Kind for ChanHandle {
    const MAGIC: u64 = 0x6a72_6368_616e_0001; // "jrchan\0\x01"
    const NAME: &'static str = "jr_chan";
    type Opaque = jr_chan;
}

/// The channel of a handle argument.
///
/// # Safety
///
/// As [`Handle::from_ptr`].
pub(crate) unsafe fn chan_of<'a>(ptr: *const jr_chan) -> Result<&'a ChanHandle, jr_status> {
    // SAFETY: the caller's contract.
    Ok(&unsafe { Handle::<ChanHandle>::from_ptr(ptr) }?.value)
}

/// Makes a channel that buffers up to `capacity` items (at least 1). `item_free`
/// (nullable) destroys the items the channel still holds when it is freed. The caller
/// owns `*out` and frees it with `jr_chan_free`.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (`capacity` 0, `out` NULL). Thread-safe.
#[no_mangle]
pub extern "C" fn jr_chan_new(
    capacity: usize,
    item_free: jr_free_fn,
    out: *mut *mut jr_chan,
) -> jr_status {
    status(|| {
        if capacity == 0 || out.is_null() {
            return Err(invalid(format_args!("capacity is 0 or out is NULL")));
        }
        fork::install();
        let handle = Handle::into_raw(ChanHandle {
            channel: Channel::new(capacity),
            item_free,
            borrowed: false,
        });
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { write_out(out, handle) }
    })
}

/// Sends `item`, waiting for room at most `timeout_ns` nanoseconds (negative: forever;
/// 0: not at all) and giving up if `token` (nullable) is cancelled. On success the
/// channel owns the item; on any error it is still the caller's.
///
/// Returns `JR_OK`, `JR_E_CLOSED`, `JR_E_FULL` (`timeout_ns` 0 and no room),
/// `JR_E_TIMEOUT`, `JR_E_CANCELLED`, `JR_E_INVALID_ARG` (not a channel or token),
/// `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_chan_send(
    chan: *mut jr_chan,
    item: *mut c_void,
    timeout_ns: i64,
    token: *mut jr_token,
) -> jr_status {
    status(|| {
        // SAFETY: a channel handle by the contract above.
        let chan = unsafe { chan_of(chan) }?;
        // SAFETY: a token handle or NULL by the contract above.
        let token = unsafe { TokenHandle::opt_token_of(token) }?;
        let item = Item {
            ptr: item,
            free: chan.item_free,
        };
        let sent = match (token, timeout_of(timeout_ns)) {
            (None, Some(t)) if t.is_zero() => chan.channel.try_send(item),
            (Some(token), timeout) => chan.channel.send_with(item, &token, timeout),
            (None, Some(timeout)) => chan.channel.send_timeout(item, timeout),
            (None, None) => chan.channel.send(item),
        };
        sent.map_err(|error| {
            let status = match &error {
                SendError::Full(_) => jr_status::JR_E_FULL,
                SendError::Closed(_) => jr_status::JR_E_CLOSED,
                SendError::Timeout(_) => jr_status::JR_E_TIMEOUT,
                SendError::Cancelled(..) => jr_status::JR_E_CANCELLED,
            };
            // Still the caller's: not destroyed.
            let _ = error.into_inner().take();
            status
        })
    })
}

/// Sends `item` if there is room now: `jr_chan_send` with no wait.
///
/// Returns `JR_OK`, `JR_E_FULL`, `JR_E_CLOSED`, `JR_E_INVALID_ARG`, `JR_E_FORKED`.
/// Thread-safe, never blocks.
#[no_mangle]
pub extern "C" fn jr_chan_try_send(chan: *mut jr_chan, item: *mut c_void) -> jr_status {
    jr_chan_send(chan, item, 0, std::ptr::null_mut())
}

/// Receives an item into `*item`, waiting at most `timeout_ns` nanoseconds (negative:
/// forever; 0: not at all) and giving up if `token` (nullable) is cancelled. The caller
/// owns the item it receives. A closed channel gives what it buffers first.
///
/// Returns `JR_OK`, `JR_E_CLOSED` (closed and drained), `JR_E_EMPTY` (`timeout_ns` 0
/// and nothing buffered, as a send of no wait into a full channel is `JR_E_FULL`),
/// `JR_E_TIMEOUT`, `JR_E_CANCELLED`, `JR_E_INVALID_ARG` (not a
/// channel or token, `item` NULL), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_chan_recv(
    chan: *mut jr_chan,
    item: *mut *mut c_void,
    timeout_ns: i64,
    token: *mut jr_token,
) -> jr_status {
    status(|| {
        // SAFETY: a channel handle by the contract above.
        let chan = unsafe { chan_of(chan) }?;
        // SAFETY: a token handle or NULL by the contract above.
        let token = unsafe { TokenHandle::opt_token_of(token) }?;
        if item.is_null() {
            return Err(invalid(format_args!("item is NULL")));
        }
        let received = match (token, timeout_of(timeout_ns)) {
            (None, Some(t)) if t.is_zero() => chan.channel.try_recv(),
            (Some(token), timeout) => chan.channel.recv_with(&token, timeout),
            (None, Some(timeout)) => chan.channel.recv_timeout(timeout),
            (None, None) => chan.channel.recv(),
        };
        let got = received.map_err(|error| match error {
            RecvError::Closed => jr_status::JR_E_CLOSED,
            RecvError::Empty => jr_status::JR_E_EMPTY,
            RecvError::Timeout => jr_status::JR_E_TIMEOUT,
            RecvError::Cancelled(_) => jr_status::JR_E_CANCELLED,
        })?;
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { write_out(item, got.take()) }
    })
}

/// Receives an item if one is buffered now: `jr_chan_recv` with no wait.
///
/// Returns `JR_OK`, `JR_E_EMPTY` (nothing buffered), `JR_E_CLOSED`,
/// `JR_E_INVALID_ARG`, `JR_E_FORKED`. Thread-safe, never blocks.
#[no_mangle]
pub extern "C" fn jr_chan_try_recv(chan: *mut jr_chan, item: *mut *mut c_void) -> jr_status {
    jr_chan_recv(chan, item, 0, std::ptr::null_mut())
}

/// Closes the channel: sends fail with `JR_E_CLOSED` from now on (waiting ones too);
/// receivers get what is buffered, then `JR_E_CLOSED`. Closing a closed channel does
/// nothing.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a channel), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_chan_close(chan: *mut jr_chan) -> jr_status {
    status(|| {
        // SAFETY: a channel handle by the contract above.
        unsafe { chan_of(chan) }?.channel.close();
        Ok(())
    })
}

/// Writes the number of items buffered now to `*out`.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a channel, `out` NULL), `JR_E_FORKED`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn jr_chan_len(chan: *const jr_chan, out: *mut usize) -> jr_status {
    status(|| {
        // SAFETY: a channel handle by the contract above.
        let chan = unsafe { chan_of(chan) }?;
        // SAFETY: checked in `write_out`; the caller provides a writable pointer.
        unsafe { write_out(out, chan.channel.len()) }
    })
}

/// Frees a channel handle; the items it still buffers are destroyed with its
/// `item_free`. NULL is a no-op.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a channel), `JR_E_FORKED` (made before
/// `fork()`: leaked). Not to be called while another thread uses the handle (a send or
/// receive in progress, for one).
#[no_mangle]
pub extern "C" fn jr_chan_free(chan: *mut jr_chan) -> jr_status {
    status(|| {
        // SAFETY: a channel handle or NULL by the contract above; checked before freeing.
        if let Ok(handle) = unsafe { Handle::<ChanHandle>::from_ptr(chan) } {
            if handle.value.borrowed {
                return Err(invalid(format_args!(
                    "a borrowed jr_chan handle (a stream producer's) is not freed"
                )));
            }
        }
        // SAFETY: as above; no other thread uses it (the contract).
        drop(unsafe { Handle::<ChanHandle>::free(chan) }?);
        Ok(())
    })
}
