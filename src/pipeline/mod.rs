//! Pipelines: a source, a chain of stages with their own concurrency, ordered or not,
//! and an output, with a bound on the items in flight. Stages run as short jobs on the
//! pool (one job per item and stage, never blocking), so an idle pipeline holds no worker.
//! The engine (`engine.rs`) is type-erased and shared with the C ABI.

mod engine;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cancel::CancelToken;
use crate::channel::{Channel, RecvError, Waiter};
use crate::context::Context;
use crate::error::JobError;
use crate::pool::Pool;
use crate::timer::deadline_after;

use self::engine::{Ended, Engine, Item, Kick, Pulled, Refused, SourceFn, StageSpec};

/// The default bound on the items in a pipeline ([`PipelineBuilder::max_in_flight`]).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// Builds a [`Pipeline`]: its stages, in order, then [`build`](PipelineBuilder::build)
/// (fed by pushes) or [`run`](PipelineBuilder::run) (fed by an iterator).
///
/// `In` is what enters, `Out` what the stages so far give, `E` the stages' error type.
#[must_use]
pub struct PipelineBuilder<In, Out, E> {
    pool: Pool,
    max_in_flight: usize,
    token: Option<CancelToken>,
    stages: Vec<StageSpec<E>>,
    _types: PhantomData<fn(In) -> Out>,
}

impl<In, Out, E> fmt::Debug for PipelineBuilder<In, Out, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("max_in_flight", &self.max_in_flight)
            .field("stages", &self.stages.len())
            .finish()
    }
}

impl<In, Out, E> PipelineBuilder<In, Out, E>
where
    In: Send + 'static,
    Out: Send + 'static,
    E: Send + 'static,
{
    /// At most `n` items are in the pipeline at once (taken in and not yet delivered by
    /// `next` or dropped by a stage): a push waits while it is full, and a source is not
    /// read ahead of it. Default [`DEFAULT_MAX_IN_FLIGHT`].
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        assert!(n >= 1, "a pipeline needs room for at least one item");
        self.max_in_flight = n;
        self
    }

    /// The pipeline's token is a child of `token`: cancelling it cancels the pipeline
    /// (its stages see `ctx.is_cancelled()`, its items are destroyed, `next` reports
    /// [`JobError::Cancelled`]).
    pub fn token(mut self, token: &CancelToken) -> Self {
        self.token = Some(token.clone());
        self
    }

    /// Adds a stage: `f` runs once per item, at most `concurrency` at once, as a job of
    /// the pool with the item's [`Context`]. It returns `Ok(Some(b))` to pass `b` on,
    /// `Ok(None)` to drop the item (a filter), or `Err` to fail the pipeline (its first
    /// failure, or panic, cancels the pipeline's token and is reported by `next`; an
    /// `Err` returned once the pipeline's token is cancelled is reported as
    /// [`JobError::Cancelled`]). An `ordered` stage passes its outputs on in input order
    /// (the order items entered the pipeline), however many run at once; an unordered one
    /// as they come.
    ///
    /// # Panics
    ///
    /// If `concurrency` is 0.
    pub fn stage<B, F>(
        mut self,
        concurrency: usize,
        ordered: bool,
        f: F,
    ) -> PipelineBuilder<In, B, E>
    where
        B: Send + 'static,
        F: Fn(&Context<'_>, Out) -> Result<Option<B>, E> + Send + Sync + 'static,
    {
        assert!(concurrency >= 1, "a stage runs at least one item at once");
        let func = move |ctx: &Context<'_>, item: Item| {
            let input = *item
                .downcast::<Out>()
                .expect("a stage gets what the stage before it gives");
            f(ctx, input).map(|output| output.map(|b| Box::new(b) as Item))
        };
        self.stages.push(StageSpec {
            func: Box::new(func),
            concurrency,
            ordered,
        });
        PipelineBuilder {
            pool: self.pool,
            max_in_flight: self.max_in_flight,
            token: self.token,
            stages: self.stages,
            _types: PhantomData,
        }
    }

    /// The pipeline, fed by [`Pipeline::push`] until [`Pipeline::close_input`].
    pub fn build(self) -> Pipeline<In, Out, E> {
        self.start(None)
    }

    /// The pipeline, fed from `source` (pushes are refused with
    /// [`PushError::Closed`]). The source is pulled by a job of the pool that reads while
    /// fewer than `max_in_flight` items are inside and then returns (another starts when
    /// room frees): never ahead of the bound, and never holding a worker while waiting.
    /// The pipeline ends when the source does and every item has come out. A panic in the
    /// source fails the pipeline ([`JobError::Panicked`]).
    pub fn run<I>(self, source: I) -> Pipeline<In, Out, E>
    where
        I: IntoIterator<Item = In>,
        I::IntoIter: Send + 'static,
    {
        let mut iter = source.into_iter();
        let pull: SourceFn = Box::new(move |_: &Kick| match iter.next() {
            Some(item) => Pulled::Item(Box::new(item)),
            None => Pulled::End,
        });
        self.start(Some(pull))
    }

    /// The pipeline, fed from `channel` until it is closed and drained (pushes are
    /// refused with [`PushError::Closed`]). As with [`PipelineBuilder::run`], a job of
    /// the pool takes what the channel holds while there is room and returns; while the
    /// channel is empty no job waits on it: the channel's next send (or its close)
    /// starts the reading job again. Other receivers of the channel may take items too.
    pub fn run_channel(self, channel: Channel<In>) -> Pipeline<In, Out, E> {
        let mut source = ChannelSource {
            channel,
            waiting: None,
            call: None,
        };
        let pull: SourceFn = Box::new(move |kick: &Kick| source.pull(kick));
        self.start(Some(pull))
    }

    fn start(self, source: Option<SourceFn>) -> Pipeline<In, Out, E> {
        let engine = Engine::new(
            &self.pool,
            self.token.as_ref(),
            self.stages,
            self.max_in_flight,
            source,
        );
        Pipeline {
            engine,
            _types: PhantomData,
        }
    }
}

/// Reads a channel for [`PipelineBuilder::run_channel`] without waiting on it.
struct ChannelSource<T> {
    channel: Channel<T>,
    /// Its waiter on the channel's receivers, if it registered one.
    waiting: Option<Arc<Waiter>>,
    /// What the waiter calls: kicks the pipeline's feeder.
    call: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl<T: Send + 'static> ChannelSource<T> {
    fn pull(&mut self, kick: &Kick) -> Pulled {
        let call = self.call.get_or_insert_with(|| {
            let kick = kick.clone();
            Arc::new(move || kick.kick())
        });
        match self.channel.recv_or_notify(&mut self.waiting, call) {
            Ok(item) => Pulled::Item(Box::new(item)),
            Err(RecvError::Empty) => Pulled::Pending,
            Err(_) => Pulled::End,
        }
    }
}

impl<T> Drop for ChannelSource<T> {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiting.take() {
            self.channel.forget_notify(&waiter);
        }
    }
}

/// Why a push did not take its item; each variant gives the item back.
#[derive(PartialEq, Eq)]
pub enum PushError<T> {
    /// `try_push`: the pipeline holds `max_in_flight` items.
    Full(T),
    /// The pipeline stayed full for the whole timeout.
    Timeout(T),
    /// The input is closed ([`Pipeline::close_input`], or the pipeline runs from a
    /// source).
    Closed(T),
    /// The pipeline failed or was cancelled ([`Pipeline::next`] says why).
    Failed(T),
}

impl<T> PushError<T> {
    /// The item that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(item)
            | PushError::Timeout(item)
            | PushError::Closed(item)
            | PushError::Failed(item) => item,
        }
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "Full(..)",
            PushError::Timeout(_) => "Timeout(..)",
            PushError::Closed(_) => "Closed(..)",
            PushError::Failed(_) => "Failed(..)",
        })
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "the pipeline is full",
            PushError::Timeout(_) => "timed out waiting for room in the pipeline",
            PushError::Closed(_) => "the pipeline's input is closed",
            PushError::Failed(_) => "the pipeline failed or was cancelled",
        })
    }
}

impl<T> std::error::Error for PushError<T> {}

/// Why [`Pipeline::next`] gave no item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NextError<E> {
    /// The end: the input is closed and every item has come out (or, after a failure,
    /// the failure has been reported already).
    #[error("the pipeline is closed and drained")]
    Closed,
    /// The timeout passed before an item came.
    #[error("timed out waiting for the pipeline's next item")]
    Timeout,
    /// The pipeline's first failure: a stage's error or panic, or the pipeline's
    /// cancellation. Reported once; `next` gives `Closed` after it.
    #[error("the pipeline failed: {0}")]
    Failed(JobError<E>),
}

/// A pipeline: items enter (pushed, or pulled from a source), go through the stages
/// and come out of [`Pipeline::next`] (or the iterator).
///
/// - Each stage runs its function as short jobs on the pool, at most its `concurrency`
///   at once; an idle pipeline holds no worker.
/// - An ordered stage passes its outputs on in input order; an unordered one as they
///   come. When every stage is ordered the output is in input order.
/// - At most `max_in_flight` items are inside at once (an item counts from when it enters
///   until `next` delivers it or a stage drops it): a push waits for room.
/// - The first failure cancels the pipeline's token, destroys every item inside, and is
///   reported by `next` ([`NextError::Failed`]).
///
/// Dropping a `Pipeline` cancels it: the items inside are destroyed (those in running
/// stages once their stage returns); [`Pipeline::stop`] also waits for that.
///
/// # Examples
///
/// ```
/// use jobrunner::{Context, Pipeline, Pool};
///
/// let pool = Pool::builder().threads(2).build()?;
/// let squares_of_odds = Pipeline::builder(&pool)
///     .max_in_flight(8)
///     .stage(2, true, |_: &Context<'_>, x: u64| Ok::<_, String>((x % 2 == 1).then_some(x)))
///     .stage(4, true, |_: &Context<'_>, x: u64| Ok(Some(x * x)))
///     .run(0..10u64);
/// let out: Vec<u64> = squares_of_odds.map(Result::unwrap).collect();
/// assert_eq!(out, [1, 9, 25, 49, 81]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pipeline<In, Out, E> {
    engine: Arc<Engine<E>>,
    _types: PhantomData<fn(In) -> Out>,
}

impl<In, Out, E: Send + 'static> Pipeline<In, Out, E> {
    /// The output as `wait_any` watches it.
    pub(crate) fn watcher(&self) -> &dyn crate::select::Watch {
        &*self.engine
    }
}

impl<In, Out, E> fmt::Debug for Pipeline<In, Out, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

impl<In, E> Pipeline<In, In, E>
where
    In: Send + 'static,
    E: Send + 'static,
{
    /// A builder for a pipeline on `pool` (no stage yet: add them with
    /// [`PipelineBuilder::stage`]).
    pub fn builder(pool: &Pool) -> PipelineBuilder<In, In, E> {
        PipelineBuilder {
            pool: pool.clone(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            token: None,
            stages: Vec::new(),
            _types: PhantomData,
        }
    }
}

impl<In, Out, E> Pipeline<In, Out, E>
where
    In: Send + 'static,
    Out: Send + 'static,
    E: Send + 'static,
{
    /// Pushes `item`, waiting while the pipeline is full (in a job, a spare worker
    /// takes this one's place meanwhile if too few would be left running).
    ///
    /// # Errors
    ///
    /// [`PushError::Closed`] or [`PushError::Failed`], with the item.
    pub fn push(&self, item: In) -> Result<(), PushError<In>> {
        self.push_until(item, None, false)
    }

    /// [`Pipeline::push`], waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`PushError::Timeout`], [`PushError::Closed`], [`PushError::Failed`], with the
    /// item.
    pub fn push_timeout(&self, item: In, timeout: Duration) -> Result<(), PushError<In>> {
        self.push_until(item, Some(deadline_after(timeout)), false)
    }

    /// Pushes `item` if there is room now.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`], [`PushError::Closed`], [`PushError::Failed`], with the item.
    pub fn try_push(&self, item: In) -> Result<(), PushError<In>> {
        self.push_until(item, None, true)
    }

    fn push_until(
        &self,
        item: In,
        at: Option<Instant>,
        try_only: bool,
    ) -> Result<(), PushError<In>> {
        self.engine
            .push(Box::new(item), at, try_only)
            .map_err(|(item, why)| {
                let item = *item.downcast::<In>().expect("the pushed item comes back");
                match why {
                    Refused::Full => PushError::Full(item),
                    Refused::Timeout => PushError::Timeout(item),
                    Refused::Closed => PushError::Closed(item),
                    Refused::Failed => PushError::Failed(item),
                }
            })
    }

    /// Says no more items will be pushed: `next` gives [`NextError::Closed`] once every
    /// item inside has come out.
    pub fn close_input(&self) {
        self.engine.close_input();
    }

    /// The next item out, waiting for one (in a job, a spare worker takes this one's
    /// place meanwhile if too few would be left running).
    ///
    /// # Errors
    ///
    /// [`NextError::Closed`] at the end, [`NextError::Failed`] with the first failure.
    pub fn next(&self) -> Result<Out, NextError<E>> {
        self.next_until(None)
    }

    /// [`Pipeline::next`], waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::next`], and [`NextError::Timeout`].
    pub fn next_timeout(&self, timeout: Duration) -> Result<Out, NextError<E>> {
        self.next_until(Some(deadline_after(timeout)))
    }

    fn next_until(&self, at: Option<Instant>) -> Result<Out, NextError<E>> {
        match self.engine.next(at) {
            Ok(item) => Ok(*item
                .downcast::<Out>()
                .expect("the last stage gives the output type")),
            Err(Ended::Closed) => Err(NextError::Closed),
            Err(Ended::Timeout) => Err(NextError::Timeout),
            Err(Ended::Failed(error)) => Err(NextError::Failed(error)),
        }
    }

    /// The pipeline's token: cancelled by its first failure, by [`Pipeline::cancel`], by
    /// the builder's parent token. Its stages run under it.
    pub fn token(&self) -> &CancelToken {
        self.engine.token()
    }

    /// Cancels the pipeline: its items are destroyed and `next` reports
    /// [`JobError::Cancelled`].
    pub fn cancel(&self) {
        self.engine.token().cancel();
    }

    /// Items in the pipeline now: entered and not yet delivered or dropped.
    pub fn in_flight(&self) -> usize {
        self.engine.in_flight()
    }

    /// Cancels the pipeline, destroys every item in it, and waits until none of its
    /// stage functions runs any more and every item is destroyed. Must not be called from
    /// one of the pipeline's own stage functions (it would wait for itself). The pipeline
    /// stays usable and failed (`next` reports [`JobError::Cancelled`] unless it failed
    /// before).
    pub fn stop(&self) {
        self.engine.stop();
    }
}

impl<In, Out, E> Drop for Pipeline<In, Out, E> {
    fn drop(&mut self) {
        // A drop after the end changes nothing; before, it cancels (without waiting: a
        // drop in one of the stages must not wait for itself).
        self.engine.token().cancel();
    }
}

impl<In, Out, E> Iterator for Pipeline<In, Out, E>
where
    In: Send + 'static,
    Out: Send + 'static,
    E: Send + 'static,
{
    type Item = Result<Out, JobError<E>>;

    /// `Some(Ok(item))` for each item out, then `None` at the end; a failure is one
    /// `Some(Err(error))`, then `None`.
    fn next(&mut self) -> Option<Self::Item> {
        match Pipeline::next(self) {
            Ok(item) => Some(Ok(item)),
            Err(NextError::Failed(error)) => Some(Err(error)),
            Err(NextError::Closed | NextError::Timeout) => None,
        }
    }
}
