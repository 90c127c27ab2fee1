//! `wait_any`: Go's `select` over what the pool makes (jobs, groups, channels, streams,
//! pipelines, tokens), with a timeout.
//!
//! Level-triggered: it returns the index of a waitable that is ready, and the caller then
//! does the operation that would not have waited (a `try_recv`, a `next`...). Another
//! thread may have taken the item meanwhile: with several consumers, the operation must be
//! the non-blocking one and the caller loops on `wait_any` when it fails.
//!
//! # Protocol
//!
//! One `Waker` for the call is registered with every waitable: a removable end callback
//! on a job (the parking table's tagged callbacks), the `next` waiters of a group or a
//! pipeline, the
//! watcher lists of a channel, a callback of a token. Every change that can make a
//! waitable ready wakes the registered wakers after it is made, and the caller checks
//! every waitable after registering and again after each wake, so that no change is
//! missed between a check and the park. Before returning, the call takes every
//! registration back.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::cancel::{CallbackKey, CancelToken};
use crate::channel::{Channel, Side, Watch as ChannelWatch};
use crate::group::Group;
use crate::job::{Job, JobHandle};
use crate::pipeline::Pipeline;
use crate::semaphore::{block_compensated, block_on, Waker};
use crate::stream::Stream;
use crate::timer::deadline_after;

/// Something with a consumer side `wait_any` watches (a group's `next`, a pipeline's
/// output), whatever its types.
pub(crate) trait Watch: Send + Sync {
    /// Whether the consumer's operation would not wait now.
    fn is_ready(&self) -> bool;
    /// Wakes `waker` at every change that can make it ready, until `unwatch`.
    fn watch(&self, waker: &Arc<Waker>);
    fn unwatch(&self, waker: &Arc<Waker>);
}

/// Something [`wait_any`] can wait for. Made by its constructors, which borrow what they
/// watch.
pub struct Waitable<'a> {
    kind: Kind<'a>,
}

enum Kind<'a> {
    Job(JobHandle),
    Group(&'a dyn Watch),
    Pipeline(&'a dyn Watch),
    Stream(&'a dyn Watch),
    Channel(&'a dyn ChannelWatch, Side),
    Token(&'a CancelToken),
}

impl fmt::Debug for Waitable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, ready) = match &self.kind {
            Kind::Job(_) => ("job ended", self.is_ready()),
            Kind::Group(_) => ("group has a job to give", self.is_ready()),
            Kind::Pipeline(_) => ("pipeline has an output", self.is_ready()),
            Kind::Stream(_) => ("stream has an item or has ended", self.is_ready()),
            Kind::Channel(_, Side::Recv) => ("channel has an item", self.is_ready()),
            Kind::Channel(_, Side::Send) => ("channel has room", self.is_ready()),
            Kind::Token(_) => ("token cancelled", self.is_ready()),
        };
        f.debug_struct("Waitable")
            .field("kind", &kind)
            .field("ready", &ready)
            .finish()
    }
}

impl<'a> Waitable<'a> {
    /// Ready once the job has ended (its `wait` returns at once).
    pub fn job<T: Send + 'static, E: Send + 'static>(job: &'a Job<T, E>) -> Self {
        Self::handle(&job.handle())
    }

    /// Ready once the job has ended.
    pub fn handle(job: &JobHandle) -> Self {
        Waitable {
            kind: Kind::Job(job.clone()),
        }
    }

    /// Ready when the group's `next` would not wait: a job has ended and waits to be
    /// taken, or the group is closed and drained (`next` gives `None`). For a group that
    /// keeps no ended job ([`GroupOptions::wait_only`](crate::GroupOptions::wait_only)),
    /// only the latter.
    pub fn group<T: Send + 'static, E: Send + 'static>(group: &'a Group<T, E>) -> Self {
        Waitable {
            kind: Kind::Group(group.watcher()),
        }
    }

    /// Ready when the pipeline's `next` would not wait: an item has come out, the
    /// pipeline has failed (`next` reports it), or it has drained after its input was
    /// closed.
    pub fn pipeline<In, Out, E: Send + 'static>(pipeline: &'a Pipeline<In, Out, E>) -> Self {
        Waitable {
            kind: Kind::Pipeline(pipeline.watcher()),
        }
    }

    /// Ready when a receive would not wait: an item is buffered, or the channel is closed.
    pub fn recv<T: Send>(channel: &'a Channel<T>) -> Self {
        Waitable {
            kind: Kind::Channel(channel.watcher(), Side::Recv),
        }
    }

    /// Ready when a send would not wait: there is room, or the channel is closed.
    pub fn send<T: Send>(channel: &'a Channel<T>) -> Self {
        Waitable {
            kind: Kind::Channel(channel.watcher(), Side::Send),
        }
    }

    /// Ready when the stream's `next` would not wait: an item is buffered, or the
    /// producer has ended (its end, or its failure, is next).
    pub fn stream<T: Send + 'static, E: Send + 'static>(stream: &'a Stream<T, E>) -> Self {
        Waitable {
            kind: Kind::Stream(stream),
        }
    }

    /// Ready once the token is cancelled.
    pub fn token(token: &'a CancelToken) -> Self {
        Waitable {
            kind: Kind::Token(token),
        }
    }

    /// Whether it is ready now.
    pub fn is_ready(&self) -> bool {
        match &self.kind {
            Kind::Job(job) => job.is_finished(),
            Kind::Group(watched) | Kind::Pipeline(watched) | Kind::Stream(watched) => {
                watched.is_ready()
            }
            Kind::Channel(channel, side) => channel.is_ready(*side),
            Kind::Token(token) => token.is_cancelled(),
        }
    }

    /// Registers `waker` to be woken by the changes that can make it ready.
    fn watch(&self, waker: &Arc<Waker>) -> Watching {
        match &self.kind {
            Kind::Job(job) => {
                let target = Arc::clone(waker);
                // Already ended: nothing to register (the caller's check sees it).
                let _ = job.watch_end(tag_of(waker), move || target.wake());
                Watching::Job
            }
            Kind::Group(watched) | Kind::Pipeline(watched) | Kind::Stream(watched) => {
                watched.watch(waker);
                Watching::Other
            }
            Kind::Channel(channel, side) => {
                channel.watch(*side, waker);
                Watching::Other
            }
            Kind::Token(token) => {
                let target = Arc::clone(waker);
                Watching::Token(token.on_cancel(move |_| target.wake()))
            }
        }
    }

    /// Takes back what `watch` registered.
    fn unwatch(&self, waker: &Arc<Waker>, watching: Watching) {
        match (&self.kind, watching) {
            (Kind::Job(job), _) => job.unwatch_end(tag_of(waker)),
            (Kind::Group(watched) | Kind::Pipeline(watched) | Kind::Stream(watched), _) => {
                watched.unwatch(waker);
            }
            (Kind::Channel(channel, side), _) => channel.unwatch(*side, waker),
            (Kind::Token(token), Watching::Token(key)) => {
                token.remove_callback(key);
            }
            (Kind::Token(_), _) => {}
        }
    }
}

/// What `watch` registered, for `unwatch`.
enum Watching {
    Job,
    Token(CallbackKey),
    Other,
}

/// The tag of a call's registrations: its waker's address (unique while it lives).
pub(crate) fn tag_of(waker: &Arc<Waker>) -> usize {
    Arc::as_ptr(waker) as usize
}

/// Waits until one of `items` is ready, or `timeout` passes (`None`: no limit), and
/// returns the index of a ready one (the first, in order), or `None` on timeout. An
/// empty list returns `None` after the timeout, or at once without one (nothing could
/// ever be ready).
///
/// Level-triggered, as `poll(2)`: readiness says the operation would not wait now; with
/// several consumers another may act first, so follow it with the non-blocking operation
/// (`try_recv`, `try_send`, `next_timeout(Duration::ZERO)`...) and call again if that
/// finds nothing. A wait inside a job blocks its worker, and a spare worker runs in its
/// place while it waits (as a channel wait does), so the job it waits for can run even
/// on a pool of one thread.
///
/// ```
/// use std::time::Duration;
/// use jobrunner::{wait_any, CancelToken, Channel, Pool, Waitable};
///
/// let pool = Pool::builder().threads(2).build().unwrap();
/// let items = Channel::new(8);
/// let stop = CancelToken::new();
/// let producer = {
///     let items = items.clone();
///     pool.submit(move |_| items.send(42).map_err(drop)).unwrap()
/// };
/// let watch = [Waitable::recv(&items), Waitable::token(&stop)];
/// match wait_any(&watch, Some(Duration::from_secs(5))) {
///     Some(0) => assert_eq!(items.try_recv(), Ok(42)),
///     other => panic!("{other:?}"),
/// }
/// producer.wait().unwrap();
/// stop.cancel();
/// assert_eq!(wait_any(&watch, Some(Duration::ZERO)), Some(1));
/// ```
pub fn wait_any(items: &[Waitable<'_>], timeout: Option<Duration>) -> Option<usize> {
    let first_ready = || items.iter().position(Waitable::is_ready);
    if let Some(ready) = first_ready() {
        return Some(ready);
    }
    let at = timeout.map(deadline_after);
    if items.is_empty() {
        if let Some(at) = at {
            let waker = Waker::current(false);
            block_on(&waker, || false, Some(at));
        }
        return None;
    }
    let waker = Arc::new(Waker::current(false));
    loop {
        let watching: Vec<Watching> = items.iter().map(|item| item.watch(&waker)).collect();
        let unwatch = |watching: Vec<Watching>| {
            for (item, watching) in items.iter().zip(watching) {
                item.unwatch(&waker, watching);
            }
        };
        // Ready since the first look: no need to block (nor to start a spare worker).
        if let Some(index) = first_ready() {
            unwatch(watching);
            return Some(index);
        }
        let ready = block_compensated(&waker, || first_ready().is_some(), at);
        unwatch(watching);
        if let Some(index) = first_ready() {
            return Some(index);
        }
        if !ready {
            return None; // the deadline passed with nothing ready
        }
        // Ready when checked, taken by another thread since: wait again.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Pool;

    /// Thousands of calls that time out leave no registration behind on a running job, a
    /// group, a channel (both sides) or a token, and a call that returns ready neither.
    #[test]
    fn every_registration_is_taken_back() {
        let pool = Pool::builder().threads(1).build().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = std::sync::Mutex::new(rx);
        let running = pool
            .submit(move |_| {
                let _ = rx.lock().unwrap().recv();
                Ok::<_, ()>(())
            })
            .unwrap();
        let group: Group<(), ()> = pool.group();
        let (gtx, grx) = std::sync::mpsc::channel::<()>();
        let grx = std::sync::Mutex::new(grx);
        group
            .submit(move |_| {
                let _ = grx.lock().unwrap().recv();
                Ok(())
            })
            .unwrap();
        let quiet = Channel::<u8>::new(1);
        let full = Channel::<u8>::new(1);
        full.send(0).unwrap();
        let token = CancelToken::new();
        let items = [
            Waitable::job(&running),
            Waitable::group(&group),
            Waitable::recv(&quiet),
            Waitable::send(&full),
            Waitable::token(&token),
        ];
        for _ in 0..2_000 {
            assert_eq!(wait_any(&items, Some(Duration::from_nanos(1))), None);
        }
        assert_eq!(running.handle().end_callbacks(), 0);
        assert_eq!(group.next_waiter_count(), 0);
        assert_eq!(quiet.watcher_counts(), (0, 0));
        assert_eq!(full.watcher_counts(), (0, 0));
        assert_eq!(token.registrations(), 0);
        quiet.send(1).unwrap();
        assert_eq!(wait_any(&items, None), Some(2));
        drop((tx, gtx));
        running.wait().unwrap();
        group.wait().unwrap();
    }
}
