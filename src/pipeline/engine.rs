//! The type-erased engine behind [`Pipeline`](super::Pipeline): items are boxed
//! `dyn Any`, stages are boxed closures, so that the typed Rust API and the C ABI run the
//! same code.
//!
//! # Protocol
//!
//! One mutex guards the whole state machine (`State`): the phase, the in-flight count,
//! each stage's running count, ready queue and reorder buffer, the output queue, the
//! source, the counted tasks and three waiter lists. Every step takes the lock, decides,
//! takes out what must happen outside the lock (tasks to submit, items to destroy,
//! waiters to wake), releases the lock and then does those things: no user code (a stage
//! function, an item's destructor, an iterator's `next`) ever runs under the lock, and
//! neither does a submit or a token cancel (whose callbacks take the lock).
//!
//! - An item enters (a push, or the feeder job pulling the source) only while
//!   `in_flight < max_in_flight`; it counts until it is delivered by `next`, dropped by
//!   a stage, or destroyed by a failure.
//! - An item ready for stage `i` starts a task at once if fewer than `concurrency` of
//!   that stage run, else waits in the stage's ready queue (lowest sequence first). A task
//!   is one job on the pool that runs the stage function once and never blocks; when it
//!   ends it starts the next ready item of its stage and routes its output.
//! - An ordered stage puts each output (or the mark of a dropped item) into its reorder
//!   buffer under the item's sequence number, and passes on consecutive entries from its
//!   "next to emit" counter. An item dropped at stage `i` leaves a mark in the reorder
//!   buffer of every ordered stage from `i` on, so their counters move past it.
//! - The first failure (a stage error or panic, the token cancelled, a task that could
//!   not run) moves the phase to failed, takes every item out of the state to be
//!   destroyed, keeps the error for `next`, wakes everyone and cancels the token (which
//!   ends the queued tasks: their items are destroyed as their closures drop).
//! - Every task is counted (`State::tasks`) from the moment it is decided until its
//!   closure is gone, after it destroyed what it had to: `stop` waits for the count to
//!   reach zero, so no stage function or destructor runs after it returns.
//!
//! Every waiter re-checks its condition under the lock after it registered, and every
//! change that can make a condition true is made under the lock and followed by a wake of
//! the waiters registered then, so no wakeup is lost; a single mutex needs no loom model.

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::cancel::{CancelReason, CancelToken};
use crate::context::Context;
use crate::error::JobError;
use crate::few::Few;
use crate::pool::{Pool, SubmitOptions};
use crate::semaphore::{block_compensated, Waker};
use crate::sync::{lock, Mutex};
use crate::unwind;

/// An item in the pipeline, its type erased.
pub(crate) type Item = Box<dyn Any + Send>;

/// A stage function, its types erased: `Ok(Some)` emits, `Ok(None)` drops.
pub(crate) type StageFn<E> =
    Box<dyn Fn(&Context<'_>, Item) -> Result<Option<Item>, E> + Send + Sync + 'static>;

/// What a source gives when pulled.
pub(crate) enum Pulled {
    /// The next item.
    Item(Item),
    /// Nothing now: the source will call `Engine::kick` when it has more (or ends).
    Pending,
    /// The source ended.
    End,
}

/// A source the feeder pulls; it is given a way to wake the feeder (for `Pending`).
pub(crate) type SourceFn = Box<dyn FnMut(&Kick) -> Pulled + Send + 'static>;

/// Starts the feeder of a pipeline again once its source has something (`Pulled::Pending`).
#[derive(Clone)]
pub(crate) struct Kick(std::sync::Weak<dyn Kickable>);

impl Kick {
    /// The source has something (or ended): the feeder runs again.
    pub(crate) fn kick(&self) {
        if let Some(engine) = self.0.upgrade() {
            engine.kick();
        }
    }
}

/// An engine seen by its source's wake-up.
pub(crate) trait Kickable: Send + Sync {
    fn kick(self: Arc<Self>);
}

/// A stage as the engine runs it.
pub(crate) struct StageSpec<E> {
    pub(crate) func: StageFn<E>,
    pub(crate) concurrency: usize,
    pub(crate) ordered: bool,
}

/// Where the pipeline is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Pushes are taken.
    Open,
    /// No more pushes (`close_input`, or a source feeds it); the items inside go on.
    InputClosed,
    /// A failure, a cancel or a stop: every item is destroyed, nothing runs any more.
    Failed,
}

/// One stage's bookkeeping.
struct Lane {
    /// Tasks of the stage deciding or running now.
    running: usize,
    /// Items waiting for a free place in the stage, by sequence.
    ready: BTreeMap<u64, Item>,
    /// Ordered stages: outputs (`None`: dropped) waiting for their turn, by sequence.
    reorder: BTreeMap<u64, Option<Item>>,
    /// Ordered stages: the sequence number of the next output to pass on.
    next_emit: u64,
}

/// How items enter.
enum Source {
    /// Pushes from the caller.
    Push,
    /// The feeder pulls this function; `None` while the feeder job holds it.
    Pull(Option<SourceFn>),
    /// The source ended (or was dropped by a failure).
    Done,
}

struct State<E> {
    phase: Phase,
    /// The sequence number of the next item to enter.
    next_seq: u64,
    /// Items taken in (or reserved by the feeder) and not yet delivered or dropped.
    in_flight: usize,
    /// Stage tasks and feeder jobs decided and not yet gone (see the module doc).
    tasks: usize,
    lanes: Vec<Lane>,
    /// Items out of the last stage, for `next`.
    output: VecDeque<Item>,
    /// The first failure, until `next` reports it.
    error: Option<JobError<E>>,
    source: Source,
    /// Whether a feeder job is submitted or running.
    feeding: bool,
    /// Set by `kick` (the source has something): a feeder that found the source
    /// pending pulls again instead of leaving.
    kicked: bool,
    /// Pushes waiting for room.
    push_waiters: Vec<Arc<Waker>>,
    /// `next` waiting for an item or the end.
    next_waiters: Vec<Arc<Waker>>,
    /// `stop` waiting for the tasks to be gone.
    idle_waiters: Vec<Arc<Waker>>,
}

/// What a step decided, to do once the lock is released.
struct After<E> {
    start: Vec<(usize, u64, Item)>,
    feed: bool,
    garbage: Vec<Item>,
    source: Option<SourceFn>,
    wake: Few<Arc<Waker>>,
    cancel: bool,
    error: Option<JobError<E>>,
}

impl<E> After<E> {
    fn new() -> Self {
        After {
            start: Vec::new(),
            feed: false,
            garbage: Vec::new(),
            source: None,
            wake: Few::None,
            cancel: false,
            error: None,
        }
    }

    fn wake_all(&mut self, list: &[Arc<Waker>]) {
        for waker in list {
            self.wake.push(Arc::clone(waker));
        }
    }
}

/// The shared engine of one pipeline.
pub(crate) struct Engine<E> {
    pool: Pool,
    token: CancelToken,
    stages: Vec<StageSpec<E>>,
    max_in_flight: usize,
    state: Mutex<State<E>>,
}

/// Which condition a waiter waits for.
#[derive(Clone, Copy)]
enum WaitFor {
    Room,
    Output,
    Idle,
}

/// Why a push did not take its item.
pub(crate) enum Refused {
    Full,
    Timeout,
    Closed,
    Failed,
}

/// Why `next` gave no item.
pub(crate) enum Ended<E> {
    Closed,
    Timeout,
    Failed(JobError<E>),
}

impl<E> Engine<E> {
    pub(crate) fn token(&self) -> &CancelToken {
        &self.token
    }
}

impl<E: Send + 'static> Engine<E> {
    pub(crate) fn new(
        pool: &Pool,
        parent: Option<&CancelToken>,
        stages: Vec<StageSpec<E>>,
        max_in_flight: usize,
        source: Option<SourceFn>,
    ) -> Arc<Self> {
        let token = match parent {
            Some(parent) => parent.child(),
            None => CancelToken::new(),
        };
        let lanes = stages
            .iter()
            .map(|_| Lane {
                running: 0,
                ready: BTreeMap::new(),
                reorder: BTreeMap::new(),
                next_emit: 0,
            })
            .collect();
        let pulled = source.is_some();
        let engine = Arc::new(Engine {
            pool: pool.clone(),
            token,
            stages,
            max_in_flight,
            state: Mutex::new(State {
                phase: if pulled {
                    Phase::InputClosed
                } else {
                    Phase::Open
                },
                next_seq: 0,
                in_flight: 0,
                tasks: 0,
                lanes,
                output: VecDeque::new(),
                error: None,
                source: match source {
                    Some(source) => Source::Pull(Some(source)),
                    None => Source::Push,
                },
                feeding: false,
                kicked: false,
                push_waiters: Vec::new(),
                next_waiters: Vec::new(),
                idle_waiters: Vec::new(),
            }),
        });
        // A cancel from outside (the parent token, `cancel`) fails the pipeline. The
        // callback holds the engine weakly: the token may outlive it.
        let weak = Arc::downgrade(&engine);
        engine.token.on_cancel(move |reason| {
            if let Some(engine) = weak.upgrade() {
                engine.fail(JobError::Cancelled(reason));
            }
        });
        if pulled {
            let mut after = After::new();
            {
                let mut state = lock(&engine.state);
                engine.maybe_feed(&mut state, &mut after);
            }
            engine.finish(after);
        }
        engine
    }

    /// Items inside now (taken in and not yet delivered or dropped).
    pub(crate) fn in_flight(&self) -> usize {
        lock(&self.state).in_flight
    }

    // ----- input ---------------------------------------------------------------------------

    /// Pushes `item`, waiting for room until `at` (`Some(now)` or earlier: not at all;
    /// `None`: forever). On refusal the item is given back.
    pub(crate) fn push(
        self: &Arc<Self>,
        item: Item,
        at: Option<Instant>,
        try_only: bool,
    ) -> Result<(), (Item, Refused)> {
        loop {
            let waker = {
                let mut state = lock(&self.state);
                match state.phase {
                    Phase::Failed => return Err((item, Refused::Failed)),
                    Phase::InputClosed => return Err((item, Refused::Closed)),
                    Phase::Open => {}
                }
                if state.in_flight < self.max_in_flight {
                    let mut after = After::new();
                    state.in_flight += 1;
                    let seq = state.next_seq;
                    state.next_seq += 1;
                    self.forward(&mut state, &mut after, 0, seq, item);
                    drop(state);
                    self.finish(after);
                    return Ok(());
                }
                if try_only {
                    return Err((item, Refused::Full));
                }
                if at.is_some_and(|at| Instant::now() >= at) {
                    return Err((item, Refused::Timeout));
                }
                let waker = Arc::new(Waker::current(false));
                state.push_waiters.push(Arc::clone(&waker));
                waker
            };
            let ready = || {
                let state = lock(&self.state);
                state.phase != Phase::Open || state.in_flight < self.max_in_flight
            };
            block_compensated(&waker, ready, at);
            self.forget_waiter(&waker, WaitFor::Room);
        }
    }

    /// No more pushes; the pipeline ends once what is inside has come out.
    pub(crate) fn close_input(self: &Arc<Self>) {
        let mut after = After::new();
        {
            let mut state = lock(&self.state);
            if state.phase == Phase::Open {
                state.phase = Phase::InputClosed;
            }
            after.wake_all(&state.push_waiters);
            after.wake_all(&state.next_waiters);
        }
        self.finish(after);
    }

    // ----- output --------------------------------------------------------------------------

    /// The next item out, waiting until `at` (see `push`).
    pub(crate) fn next(self: &Arc<Self>, at: Option<Instant>) -> Result<Item, Ended<E>> {
        loop {
            let waker = {
                let mut state = lock(&self.state);
                if let Some(item) = state.output.pop_front() {
                    let mut after = After::new();
                    state.in_flight -= 1;
                    self.room_freed(&mut state, &mut after);
                    drop(state);
                    self.finish(after);
                    return Ok(item);
                }
                if state.phase == Phase::Failed {
                    let error = state.error.take();
                    drop(state);
                    // The thread that failed the pipeline cancels the token once it has
                    // released the lock; a reader may get here first. The failure is
                    // reported only once the token says so (a no-op if it does already).
                    self.token.cancel_with(CancelReason::SiblingFailed);
                    return Err(match error {
                        Some(error) => Ended::Failed(error),
                        None => Ended::Closed,
                    });
                }
                if Self::drained(&state) {
                    return Err(Ended::Closed);
                }
                if at.is_some_and(|at| Instant::now() >= at) {
                    return Err(Ended::Timeout);
                }
                let waker = Arc::new(Waker::current(false));
                state.next_waiters.push(Arc::clone(&waker));
                waker
            };
            let ready = || Self::output_ready(&lock(&self.state));
            block_compensated(&waker, ready, at);
            self.forget_waiter(&waker, WaitFor::Output);
        }
    }

    /// Whether everything that entered came out and nothing more can enter.
    fn drained(state: &State<E>) -> bool {
        state.phase == Phase::InputClosed
            && state.in_flight == 0
            && matches!(state.source, Source::Push | Source::Done)
    }

    // ----- cancel and stop ------------------------------------------------------------------

    /// Fails the pipeline with `error` unless it has failed already.
    pub(crate) fn fail(self: &Arc<Self>, error: JobError<E>) {
        let mut after = After::new();
        {
            let mut state = lock(&self.state);
            self.fail_locked(&mut state, &mut after, error);
        }
        self.finish(after);
    }

    /// Cancels the pipeline (its token, with `Cancelled`), destroys every item, and waits
    /// until no task of it is left, so that no stage function and no item destructor of
    /// it runs after this returns. Must not be called from one of its own stages.
    pub(crate) fn stop(self: &Arc<Self>) {
        self.token.cancel();
        // The token may have been cancelled before the callback was registered (a parent
        // cancelled already): the failure is made sure of here.
        self.fail(JobError::Cancelled(CancelReason::Cancelled));
        loop {
            let waker = {
                let mut state = lock(&self.state);
                if state.tasks == 0 {
                    return;
                }
                let waker = Arc::new(Waker::current(false));
                state.idle_waiters.push(Arc::clone(&waker));
                waker
            };
            block_compensated(&waker, || lock(&self.state).tasks == 0, None);
            self.forget_waiter(&waker, WaitFor::Idle);
        }
    }

    /// Under the lock: the failure, and everything to destroy and wake.
    fn fail_locked(&self, state: &mut State<E>, after: &mut After<E>, error: JobError<E>) {
        if state.phase == Phase::Failed {
            after.error = Some(error);
            return;
        }
        state.phase = Phase::Failed;
        state.error = Some(error);
        for lane in &mut state.lanes {
            after
                .garbage
                .extend(std::mem::take(&mut lane.ready).into_values());
            after
                .garbage
                .extend(std::mem::take(&mut lane.reorder).into_values().flatten());
        }
        after.garbage.extend(state.output.drain(..));
        if let Source::Pull(source) = &mut state.source {
            after.source = source.take();
        }
        if !matches!(state.source, Source::Pull(None)) {
            // A feeder that holds the source drops it itself when it sees the failure.
            state.source = Source::Done;
        }
        state.in_flight = 0;
        after.wake_all(&state.push_waiters);
        after.wake_all(&state.next_waiters);
        after.cancel = true;
    }

    // ----- routing (under the lock) -------------------------------------------------------

    /// `item` (sequence `seq`) is ready for stage `stage` (or the output, past the last).
    fn forward(
        &self,
        state: &mut State<E>,
        after: &mut After<E>,
        stage: usize,
        seq: u64,
        item: Item,
    ) {
        if stage == self.stages.len() {
            state.output.push_back(item);
            after.wake_all(&state.next_waiters);
            return;
        }
        let lane = &mut state.lanes[stage];
        if lane.running < self.stages[stage].concurrency {
            lane.running += 1;
            state.tasks += 1;
            after.start.push((stage, seq, item));
        } else {
            lane.ready.insert(seq, item);
        }
    }

    /// Stage `stage` is done with sequence `seq`: `output` goes on (`None`: dropped).
    fn route(
        &self,
        state: &mut State<E>,
        after: &mut After<E>,
        stage: usize,
        seq: u64,
        output: Option<Item>,
    ) {
        if output.is_none() {
            // Dropped: it leaves the pipeline, and every ordered stage from here on
            // moves past its sequence number.
            state.in_flight -= 1;
            self.room_freed(state, after);
            for later in stage + 1..self.stages.len() {
                if self.stages[later].ordered {
                    state.lanes[later].reorder.insert(seq, None);
                    self.emit_in_order(state, after, later);
                }
            }
        }
        if self.stages[stage].ordered {
            state.lanes[stage].reorder.insert(seq, output);
            self.emit_in_order(state, after, stage);
        } else if let Some(item) = output {
            self.forward(state, after, stage + 1, seq, item);
        }
    }

    /// Passes on the consecutive outputs of ordered stage `stage`.
    fn emit_in_order(&self, state: &mut State<E>, after: &mut After<E>, stage: usize) {
        loop {
            let lane = &mut state.lanes[stage];
            let seq = lane.next_emit;
            let Some(entry) = lane.reorder.remove(&seq) else {
                return;
            };
            lane.next_emit += 1;
            if let Some(item) = entry {
                self.forward(state, after, stage + 1, seq, item);
            }
        }
    }

    /// Room freed (an item left): wake the pushes, and the feeder if it sleeps.
    fn room_freed(&self, state: &mut State<E>, after: &mut After<E>) {
        after.wake_all(&state.push_waiters);
        if Self::drained(state) {
            after.wake_all(&state.next_waiters);
        }
        self.maybe_feed(state, after);
    }

    /// Starts the feeder if there is a source to pull, room, and no feeder.
    fn maybe_feed(&self, state: &mut State<E>, after: &mut After<E>) {
        if !state.feeding
            && state.phase != Phase::Failed
            && matches!(state.source, Source::Pull(Some(_)))
            && state.in_flight < self.max_in_flight
        {
            state.feeding = true;
            state.tasks += 1;
            after.feed = true;
        }
    }

    // ----- after the lock -------------------------------------------------------------------

    /// Does what a step decided, outside the lock.
    fn finish(self: &Arc<Self>, after: After<E>) {
        let After {
            start,
            feed,
            garbage,
            source,
            wake,
            cancel,
            error,
        } = after;
        for (stage, seq, item) in start {
            self.submit_task(stage, seq, item);
        }
        if feed {
            self.submit_feeder();
        }
        wake.for_each(|waker| waker.wake());
        if cancel {
            // Ends the queued tasks (their items are destroyed as their closures drop).
            self.token.cancel_with(CancelReason::SiblingFailed);
        }
        drop(garbage);
        drop(source);
        drop(error);
    }

    fn submit_task(self: &Arc<Self>, stage: usize, seq: u64, item: Item) {
        let task = Task {
            engine: Arc::clone(self),
            stage,
            seq,
            item: Some(item),
        };
        // A task that cannot be submitted (the pool shuts down) is dropped with the
        // closure: its `Drop` fails the pipeline and destroys the item.
        let _ = self.pool.submit_with(
            SubmitOptions {
                unbounded: true,
                ..SubmitOptions::new().token(&self.token)
            },
            move |ctx: &Context<'_>| {
                task.run(ctx);
                Ok::<(), std::convert::Infallible>(())
            },
        );
    }

    fn submit_feeder(self: &Arc<Self>) {
        let feeder = Feeder {
            engine: Arc::clone(self),
            ran: false,
        };
        let _ = self.pool.submit_with(
            SubmitOptions {
                unbounded: true,
                ..SubmitOptions::new().token(&self.token)
            },
            move |_: &Context<'_>| {
                feeder.run();
                Ok::<(), std::convert::Infallible>(())
            },
        );
    }

    /// A task or feeder is gone: count it out, and wake `stop` if it was the last.
    fn task_gone(&self) {
        let wake = {
            let mut state = lock(&self.state);
            state.tasks -= 1;
            if state.tasks == 0 {
                std::mem::take(&mut state.idle_waiters)
            } else {
                Vec::new()
            }
        };
        wake.iter().for_each(|waker| waker.wake());
    }

    /// Whether `next` would not wait: an output, the failure, or the end.
    fn output_ready(state: &State<E>) -> bool {
        !state.output.is_empty() || state.phase == Phase::Failed || Self::drained(state)
    }

    fn forget_waiter(&self, waker: &Arc<Waker>, what: WaitFor) {
        let mut state = lock(&self.state);
        let list = match what {
            WaitFor::Room => &mut state.push_waiters,
            WaitFor::Output => &mut state.next_waiters,
            WaitFor::Idle => &mut state.idle_waiters,
        };
        list.retain(|w| !Arc::ptr_eq(w, waker));
    }
}

/// A pipeline's output as `wait_any` watches it: ready when `next` would not wait.
impl<E: Send + 'static> crate::select::Watch for Engine<E> {
    fn is_ready(&self) -> bool {
        Self::output_ready(&lock(&self.state))
    }

    fn watch(&self, waker: &Arc<Waker>) {
        lock(&self.state).next_waiters.push(Arc::clone(waker));
    }

    fn unwatch(&self, waker: &Arc<Waker>) {
        self.forget_waiter(waker, WaitFor::Output);
    }
}

/// One (item, stage) job. Counted in `State::tasks` until dropped.
struct Task<E: Send + 'static> {
    engine: Arc<Engine<E>>,
    stage: usize,
    seq: u64,
    /// The input until the stage function takes it; still here if the task never ran.
    item: Option<Item>,
}

/// How many (item, stage) steps one task runs before it leaves the rest to new jobs.
const STEPS_PER_TASK: usize = 64;

impl<E: Send + 'static> Task<E> {
    /// Runs its step, then, while the pipeline goes on, one more step that the last one
    /// made ready (the same item in the next stage, or the next waiting item of this
    /// stage) in place of a new job: an item tends to flow through every stage on one
    /// thread, as a token through oneTBB's filters, and a job, its allocation and its
    /// submit are saved per step. At most `STEPS_PER_TASK` steps, then the ready ones
    /// are submitted as jobs, as always.
    fn run(mut self, ctx: &Context<'_>) {
        let engine = Arc::clone(&self.engine);
        let mut item = self.item.take().expect("a task runs once");
        let (mut stage, mut seq) = (self.stage, self.seq);
        if lock(&engine.state).phase == Phase::Failed {
            drop(item);
            return;
        }
        for step in 1.. {
            let spec = &engine.stages[stage];
            let result = match unwind::halt_unwinding(|| (spec.func)(ctx, item)) {
                Ok(Ok(output)) => Ok(output),
                Ok(Err(error)) => Err(match ctx.cancel_reason() {
                    Some(reason) => JobError::Cancelled(reason),
                    None => JobError::Failed(error),
                }),
                Err(payload) => {
                    let message = unwind::panic_message(&*payload);
                    drop(payload);
                    ctx.pool().panic_policy().handle(&message, ctx.name());
                    Err(JobError::Panicked(message))
                }
            };
            let mut after = After::new();
            let next = {
                let mut state = lock(&engine.state);
                state.lanes[stage].running -= 1;
                match result {
                    // Failed meanwhile: what the stage made is destroyed, outside the lock.
                    Ok(Some(output)) if state.phase == Phase::Failed => {
                        after.garbage.push(output);
                    }
                    Ok(None) if state.phase == Phase::Failed => {}
                    Err(error) => engine.fail_locked(&mut state, &mut after, error),
                    Ok(output) => {
                        // The next waiting item of this stage takes the freed place.
                        let lane = &mut state.lanes[stage];
                        if let Some((next_seq, next)) = lane.ready.pop_first() {
                            lane.running += 1;
                            state.tasks += 1;
                            after.start.push((stage, next_seq, next));
                        }
                        engine.route(&mut state, &mut after, stage, seq, output);
                    }
                }
                // The step pushed last (the deepest stage) runs here, as this task.
                if step < STEPS_PER_TASK && state.phase != Phase::Failed {
                    after.start.pop().inspect(|_| state.tasks -= 1)
                } else {
                    None
                }
            };
            engine.finish(after);
            match next {
                Some((next_stage, next_seq, next_item)) => {
                    (stage, seq, item) = (next_stage, next_seq, next_item);
                }
                None => return,
            }
        }
        // `self` drops with no item: only its count goes.
    }
}

impl<E: Send + 'static> Drop for Task<E> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            // Never ran: cancelled while queued, or refused by a pool shutting down.
            let engine = &self.engine;
            let mut after = After::new();
            {
                let mut state = lock(&engine.state);
                state.lanes[self.stage].running -= 1;
                let reason = engine
                    .token
                    .reason()
                    .unwrap_or(if engine.pool.is_shut_down() {
                        CancelReason::Shutdown
                    } else {
                        CancelReason::Cancelled
                    });
                engine.fail_locked(&mut state, &mut after, JobError::Cancelled(reason));
            }
            drop(item);
            engine.finish(after);
        }
        self.engine.task_gone();
    }
}

/// The job that pulls an iterator source while there is room. Counted in
/// `State::tasks` until dropped.
struct Feeder<E: Send + 'static> {
    engine: Arc<Engine<E>>,
    ran: bool,
}

impl<E: Send + 'static> Feeder<E> {
    fn run(mut self) {
        self.ran = true;
        let engine = Arc::clone(&self.engine);
        let mut source = {
            let mut state = lock(&engine.state);
            let failed = state.phase == Phase::Failed;
            match &mut state.source {
                Source::Pull(source) if !failed => source.take(),
                _ => None,
            }
        };
        if source.is_none() {
            lock(&engine.state).feeding = false;
            return;
        }
        let kick = Kick(Arc::downgrade(&engine) as std::sync::Weak<dyn Kickable>);
        loop {
            // Reserve the room first, so that the source is never read ahead of it.
            {
                let mut state = lock(&engine.state);
                if state.phase == Phase::Failed || state.in_flight >= engine.max_in_flight {
                    // Put back for the next feeder, which the room freed next starts (the
                    // check and `feeding` change under this one lock: no room can free
                    // unseen in between).
                    state.feeding = false;
                    if state.phase != Phase::Failed {
                        state.source = Source::Pull(source.take());
                    }
                    break;
                }
                state.in_flight += 1;
                state.kicked = false;
            }
            let pull = source.as_mut().expect("the feeder holds the source");
            let pulled = unwind::halt_unwinding(|| pull(&kick));
            let mut after = After::new();
            let mut state = lock(&engine.state);
            if state.phase == Phase::Failed {
                state.feeding = false;
                drop(state);
                drop(pulled);
                break;
            }
            match pulled {
                Ok(Pulled::Item(item)) => {
                    let seq = state.next_seq;
                    state.next_seq += 1;
                    engine.forward(&mut state, &mut after, 0, seq, item);
                    drop(state);
                    engine.finish(after);
                }
                Ok(Pulled::Pending) => {
                    state.in_flight -= 1;
                    if state.kicked {
                        // The source woke us while we were pulling: pull again.
                        continue;
                    }
                    state.feeding = false;
                    state.source = Source::Pull(source.take());
                    break;
                }
                Ok(Pulled::End) => {
                    state.in_flight -= 1;
                    state.feeding = false;
                    state.source = Source::Done;
                    if Engine::drained(&state) {
                        after.wake_all(&state.next_waiters);
                    }
                    drop(state);
                    engine.finish(after);
                    break;
                }
                Err(payload) => {
                    state.in_flight -= 1;
                    state.feeding = false;
                    state.source = Source::Done;
                    let message = unwind::panic_message(&*payload);
                    engine.fail_locked(&mut state, &mut after, JobError::Panicked(message));
                    drop(state);
                    drop(payload);
                    engine.finish(after);
                    break;
                }
            }
        }
        // The source, unless it was put back, is dropped here, outside the lock.
        drop(source);
    }
}

impl<E: Send + 'static> Kickable for Engine<E> {
    fn kick(self: Arc<Self>) {
        let mut after = After::new();
        {
            let mut state = lock(&self.state);
            state.kicked = true;
            self.maybe_feed(&mut state, &mut after);
        }
        self.finish(after);
    }
}

impl<E: Send + 'static> Drop for Feeder<E> {
    fn drop(&mut self) {
        if !self.ran {
            // Never ran (cancelled, or refused by a pool shutting down): the source
            // stays in the state, where a failure or the engine's drop finds it.
            let mut after = After::new();
            {
                let mut state = lock(&self.engine.state);
                state.feeding = false;
                if state.phase != Phase::Failed {
                    let reason = self.engine.token.reason().unwrap_or(CancelReason::Shutdown);
                    self.engine
                        .fail_locked(&mut state, &mut after, JobError::Cancelled(reason));
                }
            }
            self.engine.finish(after);
        }
        self.engine.task_gone();
    }
}
