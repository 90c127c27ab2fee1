//! `Channel`: a bounded multi-producer, multi-consumer FIFO channel whose blocking
//! operations know the pool.
//!
//! A thread that waits (to send into a full channel, to receive from an empty one)
//! parks. When it is a worker running a job, the pool first makes sure that a spare
//! worker runs in its place if fewer than the configured number would be left running
//! (`Registry::begin_blocking`, compensation as in Java's ForkJoinPool): a pipeline of
//! jobs talking over channels on a small pool would otherwise deadlock, the producer's
//! worker waiting for room that only a queued consumer would make. Running queued jobs
//! on the waiter's own stack instead is not enough: the producer would run the consumer
//! on top of itself, and the consumer, once it drained, would wait for items only the
//! producer buried below it could send.
//!
//! The channel keeps its own waiter lists instead of wrapping crossbeam-channel: a wait
//! must also end on a `CancelToken`, and `wait_any` must watch a channel next to jobs,
//! groups and tokens, which both need a waiter the channel can wake from outside.
//!
//! # Protocol
//!
//! Everything is under one lock: the buffer, the `closed` flag and two FIFO lists of
//! waiters (senders waiting for room, receivers waiting for an item). A waiter is put on
//! its list under the lock, after it found it could not proceed, and waits for its
//! `woken` flag. Whoever changes what a waiter waits for takes one waiter off the list,
//! under the lock, and wakes it after releasing the lock: a send that buffers an item
//! wakes the first receiver, a receive that frees a slot wakes the first sender, a close
//! wakes everyone. A woken waiter retries from the start (it may lose the race to
//! another thread, and then waits again at the back of its list).
//!
//! A waiter that gives up (timeout, cancelled token) takes itself off its list, under the
//! lock. If it is no longer there, a wake was spent on it: it passes that wake on to the
//! next waiter of its list if what the wake announced is still there (room, or an item),
//! so that no other waiter sleeps on while it could proceed.
//!
//! The loom models at the bottom run these races: a send and a receive on a channel of
//! one, two items in flight; a close racing a blocked receiver; a receiver giving up
//! while a send wakes it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
#[cfg(not(loom))]
use std::time::{Duration, Instant};

#[cfg(not(loom))]
use crate::cancel::{CancelReason, CancelToken};
use crate::semaphore::Waker;
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::{lock, Mutex, MutexGuard};
#[cfg(not(loom))]
use crate::timer::deadline_after;

/// A bounded multi-producer, multi-consumer FIFO channel. Clones share the channel: any
/// of them may send, receive or close.
///
/// A send into a full channel, or a receive from an empty one, waits: the thread parks.
/// A job that waits gives its place to a spare worker while it is blocked, if fewer
/// than the pool's configured workers would be left running (see
/// [`Stats::spare_threads`](crate::Stats::spare_threads)), so that producer and consumer
/// jobs on a pool of one thread still meet. A spare runs the jobs queued on the workers'
/// deques (a waiting job's children) before new ones; a pool has at most
/// `max(256, 4 × threads)` spares, past which a wait blocks without one.
/// `close` ends the channel for senders at once (a send on a closed channel fails with
/// the item, it does not panic); receivers first get what is buffered, then
/// [`RecvError::Closed`]. Items still buffered when the last clone is dropped are dropped
/// with it.
///
/// ```
/// use jobrunner::{Channel, Pool};
///
/// let pool = Pool::builder().threads(1).build().unwrap();
/// let channel = Channel::new(1);
/// let producer = {
///     let channel = channel.clone();
///     pool.submit(move |_| {
///         for i in 0..10 {
///             channel.send(i).unwrap(); // waits for room; a spare worker runs the consumer
///         }
///         channel.close();
///         Ok::<_, ()>(())
///     })
///     .unwrap()
/// };
/// let consumer = pool
///     .submit(move |_| Ok::<_, ()>(channel.iter().sum::<i32>()))
///     .unwrap();
/// producer.wait().unwrap();
/// assert_eq!(consumer.wait(), Ok(45));
/// ```
pub struct Channel<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    capacity: usize,
    state: Mutex<State<T>>,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Senders waiting for room, first come first.
    senders: VecDeque<Arc<Waiter>>,
    /// Receivers waiting for an item, first come first.
    receivers: VecDeque<Arc<Waiter>>,
    /// `wait_any` callers watching for an item (or the close): woken by every send and
    /// by the close, and left registered (they take themselves off).
    recv_watchers: Vec<Arc<Waker>>,
    /// `wait_any` callers watching for room (or the close): woken by every receive and
    /// by the close.
    send_watchers: Vec<Arc<Waker>>,
}

/// After an item went in (`side` Recv: receivers may go on) or out (`side` Send: senders
/// may): takes the first waiter of that side and its `wait_any` watchers, releases the
/// lock, and wakes them.
fn wake_after<T>(mut state: MutexGuard<'_, State<T>>, side: Side) {
    let waiter = match side {
        Side::Send => state.senders.pop_front(),
        Side::Recv => state.receivers.pop_front(),
    };
    let watchers = state.watchers(side);
    drop(state);
    if let Some(waiter) = waiter {
        waiter.wake();
    }
    watchers.iter().for_each(|waker| waker.wake());
}

impl<T> State<T> {
    /// The watchers of `side` to wake, cloned out (outside the lock: none, usually).
    fn watchers(&self, side: Side) -> Vec<Arc<Waker>> {
        match side {
            Side::Send => self.send_watchers.clone(),
            Side::Recv => self.recv_watchers.clone(),
        }
    }
}

/// A thread (or a job, or a pipeline's source) waiting on a channel.
pub(crate) struct Waiter {
    /// Set by whoever took the waiter off its list to wake it.
    woken: AtomicBool,
    waker: Waker,
}

impl Waiter {
    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn is_woken(&self) -> bool {
        self.woken.load(Ordering::Acquire)
    }
}

/// Why a send failed; each variant gives the item back.
#[derive(PartialEq, Eq)]
pub enum SendError<T> {
    /// `try_send`: the channel is full.
    Full(T),
    /// The channel is closed.
    Closed(T),
    /// The timeout passed before there was room.
    Timeout(T),
    /// The token was cancelled before there was room.
    #[cfg(not(loom))]
    Cancelled(T, CancelReason),
}

impl<T> SendError<T> {
    /// The item that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Full(item) | SendError::Closed(item) | SendError::Timeout(item) => item,
            #[cfg(not(loom))]
            SendError::Cancelled(item, _) => item,
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("Full(..)"),
            SendError::Closed(_) => f.write_str("Closed(..)"),
            SendError::Timeout(_) => f.write_str("Timeout(..)"),
            #[cfg(not(loom))]
            SendError::Cancelled(_, reason) => write!(f, "Cancelled(.., {reason:?})"),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("the channel is full"),
            SendError::Closed(_) => f.write_str("the channel is closed"),
            SendError::Timeout(_) => f.write_str("timed out waiting for room in the channel"),
            #[cfg(not(loom))]
            SendError::Cancelled(_, reason) => {
                write!(f, "cancelled waiting for room in the channel: {reason}")
            }
        }
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Why a receive failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// `try_recv`: the channel is empty (and open).
    #[error("the channel is empty")]
    Empty,
    /// The channel is closed and empty: nothing more will come.
    #[error("the channel is closed")]
    Closed,
    /// The timeout passed before an item came.
    #[error("timed out waiting for an item")]
    Timeout,
    /// The token was cancelled before an item came.
    #[cfg(not(loom))]
    #[error("cancelled waiting for an item: {0}")]
    Cancelled(CancelReason),
}

/// How a wait that was not woken ended.
#[derive(Clone, Copy)]
enum GaveUp {
    Timeout,
    #[cfg(not(loom))]
    Cancelled(CancelReason),
}

/// Which list a waiter is on.
#[derive(Clone, Copy)]
pub(crate) enum Side {
    Send,
    Recv,
}

/// How an operation waits: `None` for a try; else a function that blocks until the
/// waiter is woken (it returns `None`) or gives up (it says why).
type Wait<'a> = Option<&'a dyn Fn(&Arc<Waiter>) -> Option<GaveUp>>;

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Channel {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.inner.state);
        f.debug_struct("Channel")
            .field("capacity", &self.inner.capacity)
            .field("len", &state.items.len())
            .field("closed", &state.closed)
            .finish()
    }
}

impl<T> Channel<T> {
    /// A channel that buffers up to `capacity` items.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0 (a rendezvous channel is not offered).
    pub fn new(capacity: usize) -> Self {
        assert!(capacity >= 1, "a channel holds at least one item");
        Channel {
            inner: Arc::new(Inner {
                capacity,
                state: Mutex::new(State {
                    items: VecDeque::with_capacity(capacity.min(1024)),
                    closed: false,
                    senders: VecDeque::new(),
                    receivers: VecDeque::new(),
                    recv_watchers: Vec::new(),
                    send_watchers: Vec::new(),
                }),
            }),
        }
    }

    /// The most items the channel buffers.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Items buffered now.
    pub fn len(&self) -> usize {
        lock(&self.inner.state).items.len()
    }

    /// Whether no item is buffered now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the channel is closed.
    pub fn is_closed(&self) -> bool {
        lock(&self.inner.state).closed
    }

    /// Closes the channel: sends fail from now on, waiting senders fail with their
    /// items, receivers get what is buffered and then [`RecvError::Closed`]. Returns
    /// false if it was closed already.
    pub fn close(&self) -> bool {
        let (senders, receivers, watchers) = {
            let mut state = lock(&self.inner.state);
            if state.closed {
                return false;
            }
            state.closed = true;
            let mut watchers = state.watchers(Side::Send);
            watchers.extend(state.watchers(Side::Recv));
            (
                std::mem::take(&mut state.senders),
                std::mem::take(&mut state.receivers),
                watchers,
            )
        };
        senders
            .iter()
            .chain(&receivers)
            .for_each(|waiter| waiter.wake());
        watchers.iter().for_each(|waker| waker.wake());
        true
    }

    /// Sends without waiting.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] if there is no room, [`SendError::Closed`]; each gives the item
    /// back.
    pub fn try_send(&self, item: T) -> Result<(), SendError<T>> {
        self.send_inner(item, None)
    }

    /// Receives without waiting.
    ///
    /// # Errors
    ///
    /// [`RecvError::Empty`] if nothing is buffered, [`RecvError::Closed`] once the
    /// channel is closed and drained.
    pub fn try_recv(&self) -> Result<T, RecvError> {
        self.recv_inner(None)
    }

    /// Sends `item`, waiting for room (in a job: running other queued jobs meanwhile).
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`], with the item, if the channel is closed (before or while
    /// waiting).
    pub fn send(&self, item: T) -> Result<(), SendError<T>> {
        self.send_inner(item, Some(&|waiter| block(waiter, None, None)))
    }

    /// Receives an item, waiting for one (in a job: running other queued jobs
    /// meanwhile).
    ///
    /// # Errors
    ///
    /// [`RecvError::Closed`] once the channel is closed and drained.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_inner(Some(&|waiter| block(waiter, None, None)))
    }

    /// An iterator that receives until the channel is closed and drained.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { channel: self }
    }

    fn send_inner(&self, item: T, wait: Wait<'_>) -> Result<(), SendError<T>> {
        loop {
            let waiter = {
                let mut state = lock(&self.inner.state);
                if state.closed {
                    return Err(SendError::Closed(item));
                }
                if state.items.len() < self.inner.capacity {
                    state.items.push_back(item);
                    wake_after(state, Side::Recv);
                    return Ok(());
                }
                if wait.is_none() {
                    return Err(SendError::Full(item));
                }
                let waiter = Arc::new(Waiter::current());
                state.senders.push_back(Arc::clone(&waiter));
                waiter
            };
            let wait = wait.expect("a try returned above");
            if let Some(why) = wait(&waiter) {
                self.give_up(&waiter, Side::Send);
                return Err(match why {
                    GaveUp::Timeout => SendError::Timeout(item),
                    #[cfg(not(loom))]
                    GaveUp::Cancelled(reason) => SendError::Cancelled(item, reason),
                });
            }
            // Woken: there was room, or the channel closed; look again.
        }
    }

    fn recv_inner(&self, wait: Wait<'_>) -> Result<T, RecvError> {
        loop {
            let waiter = {
                let mut state = lock(&self.inner.state);
                if let Some(item) = state.items.pop_front() {
                    wake_after(state, Side::Send);
                    return Ok(item);
                }
                if state.closed {
                    return Err(RecvError::Closed);
                }
                if wait.is_none() {
                    return Err(RecvError::Empty);
                }
                let waiter = Arc::new(Waiter::current());
                state.receivers.push_back(Arc::clone(&waiter));
                waiter
            };
            let wait = wait.expect("a try returned above");
            if let Some(why) = wait(&waiter) {
                self.give_up(&waiter, Side::Recv);
                return Err(match why {
                    GaveUp::Timeout => RecvError::Timeout,
                    #[cfg(not(loom))]
                    GaveUp::Cancelled(reason) => RecvError::Cancelled(reason),
                });
            }
        }
    }

    /// Takes `waiter`, which gave up, off its list; if a wake was spent on it meanwhile,
    /// passes the wake on to the next waiter of the list while what it announced (room,
    /// or an item) is still there.
    fn give_up(&self, waiter: &Arc<Waiter>, side: Side) {
        let next = {
            let mut state = lock(&self.inner.state);
            let still_there = match side {
                Side::Send => state.items.len() < self.inner.capacity,
                Side::Recv => !state.items.is_empty(),
            };
            let list = match side {
                Side::Send => &mut state.senders,
                Side::Recv => &mut state.receivers,
            };
            match list.iter().position(|w| Arc::ptr_eq(w, waiter)) {
                Some(position) => {
                    list.remove(position);
                    None
                }
                None if still_there => list.pop_front(),
                None => None,
            }
        };
        if let Some(next) = next {
            next.wake();
        }
    }
}

#[cfg(not(loom))]
impl<T> Channel<T> {
    /// [`Channel::send`], waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendError::Timeout`], [`SendError::Closed`]; each gives the item back.
    pub fn send_timeout(&self, item: T, timeout: Duration) -> Result<(), SendError<T>> {
        let at = deadline_after(timeout);
        self.send_inner(item, Some(&|waiter| block(waiter, Some(at), None)))
    }

    /// [`Channel::recv`], waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvError::Timeout`], [`RecvError::Closed`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvError> {
        let at = deadline_after(timeout);
        self.recv_inner(Some(&|waiter| block(waiter, Some(at), None)))
    }

    /// [`Channel::send`], until `token` is cancelled (and at most `timeout`, if given).
    /// A token cancelled already fails at once if there is no room.
    ///
    /// # Errors
    ///
    /// [`SendError::Cancelled`] with the token's reason, [`SendError::Timeout`],
    /// [`SendError::Closed`]; each gives the item back.
    pub fn send_with(
        &self,
        item: T,
        token: &CancelToken,
        timeout: Option<Duration>,
    ) -> Result<(), SendError<T>> {
        let at = timeout.map(deadline_after);
        self.send_inner(item, Some(&|waiter| block(waiter, at, Some(token))))
    }

    /// [`Channel::recv`], until `token` is cancelled (and at most `timeout`, if given).
    ///
    /// # Errors
    ///
    /// [`RecvError::Cancelled`] with the token's reason, [`RecvError::Timeout`],
    /// [`RecvError::Closed`].
    pub fn recv_with(
        &self,
        token: &CancelToken,
        timeout: Option<Duration>,
    ) -> Result<T, RecvError> {
        let at = timeout.map(deadline_after);
        self.recv_inner(Some(&|waiter| block(waiter, at, Some(token))))
    }
}

/// A channel as `wait_any` watches it, whatever its item type.
pub(crate) trait Watch: Send + Sync {
    /// Whether an operation of `side` would not wait now: an item (a receive) or room (a
    /// send) is there, or the channel is closed (it would fail at once).
    fn is_ready(&self, side: Side) -> bool;
    /// Wakes `waker` at every change that can make `side` ready, until `unwatch`.
    fn watch(&self, side: Side, waker: &Arc<Waker>);
    fn unwatch(&self, side: Side, waker: &Arc<Waker>);
}

impl<T: Send> Watch for Inner<T> {
    fn is_ready(&self, side: Side) -> bool {
        let state = lock(&self.state);
        state.closed
            || match side {
                Side::Send => state.items.len() < self.capacity,
                Side::Recv => !state.items.is_empty(),
            }
    }

    fn watch(&self, side: Side, waker: &Arc<Waker>) {
        let mut state = lock(&self.state);
        match side {
            Side::Send => state.send_watchers.push(Arc::clone(waker)),
            Side::Recv => state.recv_watchers.push(Arc::clone(waker)),
        }
    }

    fn unwatch(&self, side: Side, waker: &Arc<Waker>) {
        let mut state = lock(&self.state);
        let list = match side {
            Side::Send => &mut state.send_watchers,
            Side::Recv => &mut state.recv_watchers,
        };
        if let Some(at) = list.iter().position(|w| Arc::ptr_eq(w, waker)) {
            list.swap_remove(at);
        }
    }
}

impl<T: Send> Channel<T> {
    /// Watchers registered now (receive side, send side), for tests.
    #[cfg(test)]
    pub(crate) fn watcher_counts(&self) -> (usize, usize) {
        let state = lock(&self.inner.state);
        (state.recv_watchers.len(), state.send_watchers.len())
    }

    /// The channel as `wait_any` watches it.
    pub(crate) fn watcher(&self) -> &dyn Watch {
        &*self.inner
    }
}

#[cfg(not(loom))]
impl<T> Channel<T> {
    /// For a receiver that is not a thread (a pipeline's source): receives an item if
    /// one is buffered; otherwise, if the channel is open, makes sure `call` will be
    /// called once an item comes or the channel closes (a waiter at the back of the
    /// receivers, unless `waiting` still holds one that was not woken) and returns
    /// [`RecvError::Empty`]. Whoever registered must take the waiter off with
    /// [`Channel::forget_notify`] when it no longer wants items, so that a wake spent on
    /// it is passed on.
    pub(crate) fn recv_or_notify(
        &self,
        waiting: &mut Option<Arc<Waiter>>,
        call: &Arc<dyn Fn() + Send + Sync>,
    ) -> Result<T, RecvError> {
        let mut state = lock(&self.inner.state);
        if let Some(item) = state.items.pop_front() {
            wake_after(state, Side::Send);
            return Ok(item);
        }
        if state.closed {
            return Err(RecvError::Closed);
        }
        // A waiter not yet woken is still on the list (or being woken: its call comes).
        if waiting.as_ref().is_none_or(|w| w.is_woken()) {
            let waiter = Arc::new(Waiter {
                woken: AtomicBool::new(false),
                waker: Waker::Call(Arc::clone(call)),
            });
            state.receivers.push_back(Arc::clone(&waiter));
            *waiting = Some(waiter);
        }
        Err(RecvError::Empty)
    }

    /// Takes a waiter of [`Channel::recv_or_notify`] off the list (passing on a wake
    /// spent on it, as a receiver that gives up does).
    pub(crate) fn forget_notify(&self, waiter: &Arc<Waiter>) {
        self.give_up(waiter, Side::Recv);
    }
}

impl Waiter {
    /// A waiter for the calling thread: as a worker of its pool if it is one.
    fn current() -> Self {
        Waiter {
            woken: AtomicBool::new(false),
            waker: Waker::current(false),
        }
    }
}

/// Waits until `waiter` is woken (returns `None`), `token` is cancelled or `at` passes,
/// as `block_compensated` waits (a spin, then a park, a spare worker taking a worker's
/// place).
#[cfg(not(loom))]
fn block(waiter: &Arc<Waiter>, at: Option<Instant>, token: Option<&CancelToken>) -> Option<GaveUp> {
    let cancelled = || token.is_some_and(CancelToken::is_cancelled);
    let callback = token.map(|t| {
        let target = Arc::clone(waiter);
        (t, t.on_cancel(move |_| target.waker.wake()))
    });
    crate::semaphore::block_compensated(&waiter.waker, || waiter.is_woken() || cancelled(), at);
    if let Some((t, key)) = callback {
        t.remove_callback(key);
    }
    if waiter.is_woken() {
        return None;
    }
    match token.and_then(CancelToken::reason) {
        Some(reason) => Some(GaveUp::Cancelled(reason)),
        None => Some(GaveUp::Timeout),
    }
}

/// Under loom: parks until woken.
#[cfg(loom)]
fn block(waiter: &Arc<Waiter>, _at: Option<()>, _token: Option<()>) -> Option<GaveUp> {
    while !waiter.is_woken() {
        crate::sync::thread::park();
    }
    None
}

/// Receives from a channel until it is closed and drained (`Channel::iter`).
pub struct Iter<'a, T> {
    channel: &'a Channel<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.channel.recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Channel<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

/// Receives from a channel it owns until it is closed and drained.
pub struct IntoIter<T> {
    channel: Channel<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.channel.recv().ok()
    }
}

impl<T> IntoIterator for Channel<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;

    fn into_iter(self) -> IntoIter<T> {
        IntoIter { channel: self }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::thread;
    use loom::sync::atomic::AtomicBool;

    /// A sender and a receiver on a channel of one, two items: both arrive, in order,
    /// and nobody waits forever (a lost wake-up would leave one parked: loom reports the
    /// deadlock).
    #[test]
    fn two_items_through_a_channel_of_one() {
        crate::pool::sleep::loom_tests::model(|| {
            let channel = Channel::new(1);
            let sender = {
                let channel = channel.clone();
                loom::thread::spawn(move || {
                    channel.send(1).unwrap();
                    channel.send(2).unwrap();
                })
            };
            assert_eq!(channel.recv(), Ok(1));
            assert_eq!(channel.recv(), Ok(2));
            sender.join().unwrap();
        });
    }

    /// A close racing a receiver that waits: the receiver ends with `Closed`.
    #[test]
    fn close_ends_a_waiting_receive() {
        crate::pool::sleep::loom_tests::model(|| {
            let channel = Channel::<u8>::new(1);
            let receiver = {
                let channel = channel.clone();
                loom::thread::spawn(move || channel.recv())
            };
            channel.close();
            assert_eq!(receiver.join().unwrap(), Err(RecvError::Closed));
        });
    }

    /// A receiver gives up (as on a timeout) while a send races to wake it, and a second
    /// receiver waits too. If the wake was spent on the one that gave up, it must pass it
    /// on: else the patient receiver sleeps on with the item buffered (loom reports the
    /// deadlock, as nothing else would wake it). The item reaches exactly one of them.
    #[test]
    fn a_receiver_giving_up_passes_a_spent_wake_on() {
        crate::pool::sleep::loom_tests::model(|| {
            let channel = Channel::<u8>::new(1);
            let give_up = Arc::new(AtomicBool::new(false));
            let quitter = {
                let (channel, give_up) = (channel.clone(), give_up.clone());
                loom::thread::spawn(move || {
                    channel.recv_inner(Some(&|waiter: &Arc<Waiter>| {
                        while !waiter.is_woken() && !give_up.load(Ordering::Acquire) {
                            thread::park();
                        }
                        (!waiter.is_woken()).then_some(GaveUp::Timeout)
                    }))
                })
            };
            let patient = {
                let channel = channel.clone();
                loom::thread::spawn(move || channel.recv())
            };
            give_up.store(true, Ordering::Release);
            quitter.thread().unpark();
            channel.send(7).unwrap();
            let quitter_got = quitter.join().unwrap().ok();
            if quitter_got.is_some() {
                channel.send(8).unwrap(); // the patient one's item
            }
            let patient_got = patient.join().unwrap().unwrap();
            match quitter_got {
                Some(item) => assert_eq!((item, patient_got), (7, 8)),
                None => assert_eq!(patient_got, 7),
            }
        });
    }

    /// `wait_any`'s protocol on a channel: a watcher registers, looks, and parks while
    /// nothing is there; a send (and, in the other run, a close) racing it must wake it
    /// (else loom reports the deadlock), and the watcher takes its registration back.
    #[test]
    fn a_watcher_is_woken_by_a_send_or_a_close() {
        for close in [false, true] {
            crate::pool::sleep::loom_tests::model(move || {
                let channel = Channel::<u8>::new(1);
                let watcher = {
                    let channel = channel.clone();
                    loom::thread::spawn(move || {
                        let waker = Arc::new(Waker::current(false));
                        channel.watcher().watch(Side::Recv, &waker);
                        while !channel.watcher().is_ready(Side::Recv) {
                            thread::park();
                        }
                        channel.watcher().unwatch(Side::Recv, &waker);
                        channel.watcher_counts()
                    })
                };
                if close {
                    channel.close();
                } else {
                    channel.send(1).unwrap();
                }
                assert_eq!(watcher.join().unwrap(), (0, 0));
            });
        }
    }
}
