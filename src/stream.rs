//! `Stream`: a generator. A producer job sends items into a bounded channel; the caller
//! reads them lazily, as they come.
//!
//! The producer's closure holds a guard that closes the channel when the closure is
//! dropped: after it returns (or panics), and also when the job ends without ever
//! running (cancelled while queued, a pool shut down), so that a reader never waits for
//! a producer that is gone. A reader that finds the channel closed and drained then
//! waits for the producer job's end, which follows at once, and reports its outcome.
//!
//! While the producer runs, a callback on its context's token closes the channel when
//! the job is asked to stop (the reader's drop cancels it, and so do its submit token and
//! a `Cancel` shutdown). A token reports cancellation from the moment its cancel began,
//! before its callbacks run, so a producer whose send fails `Closed` for that reason
//! already sees `ctx.is_cancelled()`.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::channel::Side;
use crate::semaphore::Waker;
use crate::sync::lock;
use crate::timer::deadline_after;
use crate::{Channel, Context, Job, JobError, JobHandle, RecvError, SendError};

/// The sending side a stream's producer gets. A send waits for room while the reader
/// is behind (backpressure); it fails with [`SendError::Closed`] once the reader has
/// dropped or closed the stream, or the producer job is asked to stop (its context
/// reports cancellation then).
pub struct StreamSender<'a, T> {
    channel: &'a Channel<T>,
}

impl<T> StreamSender<'_, T> {
    /// Sends `item`, waiting for room.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] (the stream was dropped or closed, or the producer job was
    /// asked to stop), giving the item back.
    pub fn send(&self, item: T) -> Result<(), SendError<T>> {
        self.channel.send(item)
    }

    /// [`send`](Self::send), waiting at most `timeout` ([`SendError::Timeout`]).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), and [`SendError::Timeout`].
    pub fn send_timeout(&self, item: T, timeout: Duration) -> Result<(), SendError<T>> {
        self.channel.send_timeout(item, timeout)
    }

    /// Sends `item` if there is room now.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`], [`SendError::Closed`]; each gives the item back.
    pub fn try_send(&self, item: T) -> Result<(), SendError<T>> {
        self.channel.try_send(item)
    }

    /// Whether the reader has dropped or closed the stream (sends fail from now on).
    pub fn is_closed(&self) -> bool {
        self.channel.is_closed()
    }

    /// The channel underneath (the C API hands it to a C producer as a `jr_chan`).
    #[cfg(feature = "capi")]
    pub(crate) fn channel(&self) -> &Channel<T> {
        self.channel
    }
}

/// Why [`Stream::next_timeout`] returned no item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError<E> {
    /// No item came within the timeout; the stream goes on.
    #[error("no item within the timeout")]
    Timeout,
    /// The producer failed, panicked or was cancelled: the stream has ended.
    #[error("the stream's producer ended badly: {0}")]
    Producer(JobError<E>),
}

/// A stream of items from a producer job, read lazily: made by
/// [`Pool::stream`](crate::Pool::stream).
///
/// As an iterator it yields `Ok(item)` for each item the producer sent, in order; then,
/// if the producer failed, panicked or was cancelled, one `Err` with its
/// [`JobError`]; then `None`. Items sent before a failure are read before it. Dropping
/// the stream (or [`close`](Self::close)) stops the producer: its sends fail with
/// [`SendError::Closed`] and its context reports cancellation; items still buffered are
/// dropped. Cancelling the producer job (its submit token, [`producer`](Self::producer)
/// `.cancel()`) closes its side the same way: the reader gets the items sent so far,
/// then `Err(JobError::Cancelled)`.
///
/// ```
/// use jobrunner::Pool;
///
/// let pool = Pool::builder().threads(1).build().unwrap();
/// let squares = pool
///     .stream(4, |_ctx, tx| {
///         for i in 1..=10u64 {
///             tx.send(i * i).map_err(|_| "reader gone")?;
///         }
///         Ok(())
///     })
///     .unwrap();
/// let read: Result<Vec<u64>, jobrunner::JobError<&str>> = squares.collect();
/// assert_eq!(read.unwrap().iter().sum::<u64>(), 385);
/// ```
pub struct Stream<T, E> {
    channel: Channel<T>,
    /// The producer job, until its outcome has been read.
    job: Mutex<Option<Job<(), E>>>,
    handle: JobHandle,
}

impl<T, E> fmt::Debug for Stream<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("buffered", &self.channel.len())
            .field("capacity", &self.channel.capacity())
            .field("producer", &self.handle.state())
            .finish()
    }
}

/// Closes the stream's channel when the producer's closure is dropped (see the module
/// docs).
struct CloseOnDrop<T>(Channel<T>);

impl<T> Drop for CloseOnDrop<T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl<T: Send + 'static, E: Send + 'static> Stream<T, E> {
    /// Starts `producer` through `submit` (a pool's or a group's submit with options)
    /// on a channel of `capacity`.
    pub(crate) fn start<F, S, SE>(capacity: usize, producer: F, submit: S) -> Result<Self, SE>
    where
        F: FnOnce(&Context<'_>, &StreamSender<'_, T>) -> Result<(), E> + Send + 'static,
        S: FnOnce(Box<dyn FnOnce(&Context<'_>) -> Result<(), E> + Send>) -> Result<Job<(), E>, SE>,
    {
        let channel = Channel::new(capacity);
        let guard = CloseOnDrop(channel.clone());
        let job = submit(Box::new(move |ctx: &Context<'_>| {
            let guard = guard;
            let token = ctx.token();
            let on_stop = {
                let channel = guard.0.clone();
                token.on_cancel(move |_| {
                    channel.close();
                })
            };
            let result = producer(ctx, &StreamSender { channel: &guard.0 });
            token.remove_callback(on_stop);
            result
        }))?;
        let handle = job.handle();
        Ok(Stream {
            channel,
            job: Mutex::new(Some(job)),
            handle,
        })
    }
}

impl<T: Send + 'static, E: Send + 'static> Stream<T, E> {
    /// The next item, waiting for it: `Some(Ok(item))`; `Some(Err(_))` once if the
    /// producer ended badly; `None` at the end. (Also what the iterator yields.)
    #[allow(clippy::should_implement_trait)] // it is also the Iterator's next
    pub fn next(&mut self) -> Option<Result<T, JobError<E>>> {
        match self.read(None) {
            Ok(item) => item.map(Ok),
            Err(StreamError::Producer(error)) => Some(Err(error)),
            Err(StreamError::Timeout) => unreachable!("a read without a timeout"),
        }
    }

    /// The next item, waiting at most `timeout`: `Ok(Some(item))`, `Ok(None)` at the
    /// end of a stream whose producer succeeded.
    ///
    /// # Errors
    ///
    /// [`StreamError::Timeout`] (the stream goes on), [`StreamError::Producer`] once if
    /// the producer ended badly (the stream has ended: the next call returns
    /// `Ok(None)`).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<T>, StreamError<E>> {
        self.read(Some(timeout))
    }

    /// Items buffered now, ready to read.
    pub fn buffered(&self) -> usize {
        self.channel.len()
    }

    /// The producer job, to watch or cancel it (a cancel ends the stream with
    /// `Err(JobError::Cancelled)` after the items sent so far).
    pub fn producer(&self) -> &JobHandle {
        &self.handle
    }

    /// Stops the producer and drops what is buffered: as dropping the stream.
    pub fn close(self) {}

    /// A read that may run on several threads at once (the C API's): the next item,
    /// `Ok(None)` at the end, or the producer's failure (to one reader, once). A timeout
    /// bounds the whole read: the wait for an item, and the wait for the producer's job
    /// to end once its side is closed (it closes when the job is asked to stop, which may
    /// be a while before its function returns).
    pub(crate) fn read(&self, timeout: Option<Duration>) -> Result<Option<T>, StreamError<E>> {
        let at = timeout.map(deadline_after);
        let received = match timeout {
            None => self.channel.recv(),
            Some(timeout) => self.channel.recv_timeout(timeout),
        };
        match received {
            Ok(item) => Ok(Some(item)),
            Err(RecvError::Closed) => {
                // Closed and drained: the producer's function has returned or is asked to
                // stop; its job's end reports how it went.
                let left = at.map(|at| at.saturating_duration_since(Instant::now()));
                if left.is_some_and(|left| !self.handle.wait_timeout(left)) {
                    return Err(StreamError::Timeout);
                }
                let job = lock(&self.job).take();
                match job.map(Job::wait) {
                    Some(Err(error)) => Err(StreamError::Producer(error)),
                    Some(Ok(())) | None => Ok(None),
                }
            }
            Err(RecvError::Timeout | RecvError::Empty) => Err(StreamError::Timeout),
            Err(RecvError::Cancelled(_)) => unreachable!("the stream's reads take no token"),
        }
    }
}

/// A stream as `wait_any` watches it: ready when `next` would not wait, that is when an
/// item is buffered, or the producer's side is closed and its job has ended. Woken by
/// the channel's sends and close, and by the job's end.
impl<T: Send, E> crate::select::Watch for Stream<T, E> {
    fn is_ready(&self) -> bool {
        !self.channel.is_empty() || (self.channel.is_closed() && self.handle.is_finished())
    }

    fn watch(&self, waker: &Arc<Waker>) {
        self.channel.watcher().watch(Side::Recv, waker);
        let target = Arc::clone(waker);
        // Ended already: nothing to register (the caller's look sees it).
        let _ = self
            .handle
            .watch_end(crate::select::tag_of(waker), move || target.wake());
    }

    fn unwatch(&self, waker: &Arc<Waker>) {
        self.channel.watcher().unwatch(Side::Recv, waker);
        self.handle.unwatch_end(crate::select::tag_of(waker));
    }
}

impl<T: Send + 'static, E: Send + 'static> Iterator for Stream<T, E> {
    type Item = Result<T, JobError<E>>;

    fn next(&mut self) -> Option<Self::Item> {
        Stream::next(self)
    }
}

impl<T, E> Drop for Stream<T, E> {
    fn drop(&mut self) {
        if lock(&self.job).is_none() {
            return; // ended and read: nothing to stop
        }
        // The producer is asked to stop, which closes the channel (a waiting send fails);
        // closed here too for a producer that has not run yet or has just ended.
        self.handle.cancel();
        self.channel.close();
        while self.channel.try_recv().is_ok() {}
    }
}
