//! `Pipeline`: ordered and unordered stages, filters, per-stage concurrency limits
//! (never passed, and reached), the in-flight bound (a source is never read ahead of
//! it), the first failure cancelling the token and reported once, every item destroyed
//! exactly once (after a failure, a drop mid-run, a stop), pushes with timeouts, a pool
//! of one thread, channel sources that hold no worker while idle, and a seeded property
//! test of random pipelines against a sequential model.
//!
//! Tests wait for events; a timeout only bounds a wait that must end, or is the feature
//! under test.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use jobrunner::{
    CancelReason, CancelToken, Channel, Context, JobError, NextError, Pipeline, Pool, PushError,
};

#[allow(dead_code)]
mod common;

use common::{by_profile, patience, wait_until, DropCounter, XorShift};

fn pool(threads: usize) -> Pool {
    Pool::builder().threads(threads).build().unwrap()
}

/// Spins a little, more for some values, so that stage runs overlap and finish out of
/// order.
fn work(x: u64) {
    let spins = (x.wrapping_mul(2_654_435_761) % 7) * 200;
    for i in 0..spins {
        std::hint::black_box(i);
    }
}

/// A value whose drops are counted.
struct Tracked {
    value: u64,
    _drops: DropCounter,
}

fn tracked(value: u64, drops: &Arc<AtomicUsize>) -> Tracked {
    Tracked {
        value,
        _drops: DropCounter(Arc::clone(drops)),
    }
}

#[test]
fn ordered_stages_give_the_input_order() {
    let pool = pool(4);
    let out: Vec<u64> = Pipeline::builder(&pool)
        .max_in_flight(16)
        .stage(4, true, |_: &Context<'_>, x: u64| {
            work(x);
            Ok::<_, ()>(Some(x * 3))
        })
        .stage(3, true, |_: &Context<'_>, x: u64| {
            work(x + 1);
            Ok(Some(x + 1))
        })
        .run(0..500u64)
        .map(Result::unwrap)
        .collect();
    assert_eq!(out, (0..500).map(|x| x * 3 + 1).collect::<Vec<_>>());
}

#[test]
fn unordered_stages_give_every_item_once() {
    let pool = pool(4);
    let pipeline = Pipeline::builder(&pool)
        .stage(4, false, |_: &Context<'_>, x: u64| {
            work(x);
            Ok::<_, ()>(Some(x * 2))
        })
        .build();
    let producer = {
        thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..300u64 {
                    pipeline.push(i).unwrap();
                }
                pipeline.close_input();
            });
            let mut out = Vec::new();
            loop {
                match pipeline.next() {
                    Ok(x) => out.push(x),
                    Err(NextError::Closed) => break,
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
            out
        })
    };
    let mut out = producer;
    out.sort_unstable();
    assert_eq!(out, (0..300).map(|x| x * 2).collect::<Vec<_>>());
}

#[test]
fn filters_drop_items_and_ordered_stages_move_past_them() {
    let pool = pool(3);
    let out: Vec<u64> = Pipeline::builder(&pool)
        .stage(3, false, |_: &Context<'_>, x: u64| {
            work(x);
            Ok::<_, ()>((x % 3 != 0).then_some(x))
        })
        .stage(2, true, |_: &Context<'_>, x: u64| {
            work(x);
            Ok(Some(x))
        })
        .stage(2, true, |_: &Context<'_>, x: u64| {
            Ok((x % 2 == 0).then_some(x * 10))
        })
        .run(0..400u64)
        .map(Result::unwrap)
        .collect();
    let want: Vec<u64> = (0..400)
        .filter(|x| x % 3 != 0 && x % 2 == 0)
        .map(|x| x * 10)
        .collect();
    assert_eq!(out, want);
}

#[test]
fn a_stage_never_runs_more_than_its_concurrency_and_reaches_it() {
    let pool = pool(4);
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let limit = 3;
    let pipeline = {
        let (running, most) = (Arc::clone(&running), Arc::clone(&most));
        Pipeline::builder(&pool)
            .max_in_flight(32)
            .stage(limit, false, move |_: &Context<'_>, x: u64| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // The first ones wait for the limit to be reached (it must be: the pool
                // has more workers than the limit and enough items are in flight).
                let deadline = Instant::now() + patience();
                while most.load(Ordering::SeqCst) < limit && Instant::now() < deadline {
                    thread::yield_now();
                }
                work(x);
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, ()>(Some(x))
            })
            .run(0..200u64)
    };
    assert_eq!(pipeline.map(Result::unwrap).count(), 200);
    assert_eq!(
        most.load(Ordering::SeqCst),
        limit,
        "the limit was passed or never reached"
    );
}

#[test]
fn a_source_is_never_read_ahead_of_max_in_flight() {
    let pool = pool(3);
    let max = 5;
    // Without a consumer: exactly `max` items are taken from the source.
    let taken = Arc::new(AtomicUsize::new(0));
    let source = {
        let taken = Arc::clone(&taken);
        (0..100u64).inspect(move |_| {
            taken.fetch_add(1, Ordering::SeqCst);
        })
    };
    let pipeline = Pipeline::builder(&pool)
        .max_in_flight(max)
        .stage(2, false, |_: &Context<'_>, x: u64| Ok::<_, ()>(Some(x)))
        .run(source);
    wait_until("the pipeline is full", || pipeline.in_flight() == max);
    wait_until("max items were taken", || {
        taken.load(Ordering::SeqCst) == max
    });
    // Once no job of the pool runs or waits, nothing can read the source any more.
    wait_until("the pool is idle", || {
        let stats = pool.stats();
        stats.running == 0 && stats.queued == 0
    });
    assert_eq!(
        taken.load(Ordering::SeqCst),
        max,
        "the source was read ahead"
    );
    assert_eq!(pool.stats().running, 0, "a full pipeline holds a worker");

    // With a slow consumer and a filter: taken - (delivered + dropped) stays within the
    // bound. The counters of delivered and dropped items move before the pipeline's
    // (the consumer counts before it calls `next`, the filter before it returns), so the
    // check can only be lenient, never wrong.
    let (taken, delivered, dropped, worst) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let source = {
        let (taken, delivered, dropped, worst) = (
            taken.clone(),
            delivered.clone(),
            dropped.clone(),
            worst.clone(),
        );
        (0..2000u64).inspect(move |_| {
            let inside = taken.fetch_add(1, Ordering::SeqCst) + 1
                - delivered.load(Ordering::SeqCst)
                - dropped.load(Ordering::SeqCst);
            worst.fetch_max(inside, Ordering::SeqCst);
        })
    };
    let pipeline = {
        let dropped = dropped.clone();
        Pipeline::builder(&pool)
            .max_in_flight(max)
            .stage(3, false, move |_: &Context<'_>, x: u64| {
                work(x);
                if x % 4 == 0 {
                    dropped.fetch_add(1, Ordering::SeqCst);
                    return Ok::<_, ()>(None);
                }
                Ok(Some(x))
            })
            .run(source)
    };
    let mut count = 0;
    loop {
        delivered.fetch_add(1, Ordering::SeqCst);
        match pipeline.next() {
            Ok(_) => count += 1,
            Err(NextError::Closed) => break,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(count, 1500);
    assert!(
        worst.load(Ordering::SeqCst) <= max,
        "{} items inside",
        worst.load(Ordering::SeqCst)
    );
}

#[test]
fn the_first_failure_cancels_the_token_is_reported_once_and_every_item_is_destroyed_once() {
    let pool = pool(4);
    let drops = Arc::new(AtomicUsize::new(0));
    let parent = CancelToken::new();
    let pipeline = Pipeline::builder(&pool)
        .token(&parent)
        .max_in_flight(16)
        .stage(4, false, |_: &Context<'_>, t: Tracked| {
            work(t.value);
            Ok::<_, String>(Some(t))
        })
        .stage(2, true, |_: &Context<'_>, t: Tracked| {
            if t.value == 37 {
                return Err(format!("bad {}", t.value));
            }
            Ok(Some(t))
        })
        .build();
    let (mut made, mut delivered) = (0, 0);
    let mut next_item = None;
    let error = loop {
        assert!(made < 1000, "the failure never stopped the pushes");
        let item = next_item.take().unwrap_or_else(|| {
            made += 1;
            tracked(made - 1, &drops)
        });
        let wait = match pipeline.try_push(item) {
            Ok(()) => Duration::ZERO,
            Err(PushError::Full(item)) => {
                next_item = Some(item);
                patience()
            }
            Err(PushError::Failed(item)) => {
                drop(item);
                patience()
            }
            Err(other) => panic!("unexpected {other:?}"),
        };
        match pipeline.next_timeout(wait) {
            Ok(item) => {
                assert!(
                    item.value < 37,
                    "item {} came out of an ordered stage after 37",
                    item.value
                );
                delivered += 1;
            }
            Err(NextError::Timeout) if wait.is_zero() => {}
            Err(NextError::Failed(error)) => break error,
            Err(other) => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(error, JobError::Failed("bad 37".to_string()));
    assert!(delivered <= 37);
    assert!(pipeline.token().is_cancelled());
    assert_eq!(pipeline.token().reason(), Some(CancelReason::SiblingFailed));
    assert!(
        !parent.is_cancelled(),
        "the parent token is not the pipeline's"
    );
    assert!(matches!(
        pipeline.push(tracked(9999, &drops)),
        Err(PushError::Failed(_))
    ));
    assert_eq!(
        pipeline.next().map(|t| t.value),
        Err(NextError::Closed),
        "the failure is reported once"
    );
    pipeline.stop();
    // Each item made (and the refused one, dropped by the test) dropped exactly once.
    drop(next_item);
    assert_eq!(drops.load(Ordering::SeqCst), made as usize + 1);
}

#[test]
fn a_panicking_stage_fails_the_pipeline() {
    let pool = pool(2);
    let mut pipeline = Pipeline::builder(&pool)
        .stage(1, false, |_: &Context<'_>, x: u32| {
            assert_ne!(x, 3, "three is right out");
            Ok::<_, ()>(Some(x))
        })
        .run(0..10u32);
    let results: Vec<_> = pipeline.by_ref().collect();
    match results.last() {
        Some(Err(JobError::Panicked(message))) => assert!(message.contains("three is right out")),
        other => panic!("unexpected end {other:?}"),
    }
    assert!(pipeline.next().is_err());
}

#[test]
fn cancelling_the_parent_token_cancels_an_idle_pipeline() {
    let pool = pool(2);
    let parent = CancelToken::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let pipeline = Pipeline::builder(&pool)
        .token(&parent)
        .max_in_flight(4)
        .stage(1, true, |_: &Context<'_>, t: Tracked| Ok::<_, ()>(Some(t)))
        .build();
    for i in 0..4 {
        pipeline.push(tracked(i, &drops)).unwrap();
    }
    wait_until("the items reach the output", || {
        pipeline.in_flight() == 4 && pool.stats().running == 0
    });
    parent.cancel();
    assert_eq!(
        pipeline.next().map(|t| t.value),
        Err(NextError::Failed(JobError::Cancelled(
            CancelReason::Cancelled
        )))
    );
    assert_eq!(
        drops.load(Ordering::SeqCst),
        4,
        "the buffered items are destroyed at once"
    );
}

#[test]
fn a_pipeline_dropped_mid_run_destroys_every_item_once() {
    let pool = pool(3);
    let drops = Arc::new(AtomicUsize::new(0));
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new(gate_rx));
    let started = Arc::new(AtomicUsize::new(0));
    let pipeline = {
        let (gate, started) = (Arc::clone(&gate), Arc::clone(&started));
        Pipeline::builder(&pool)
            .max_in_flight(20)
            .stage(2, false, move |ctx: &Context<'_>, t: Tracked| {
                started.fetch_add(1, Ordering::SeqCst);
                // Held until the test lets go (or the pipeline is cancelled).
                while !ctx.is_cancelled() {
                    if gate
                        .lock()
                        .unwrap()
                        .recv_timeout(Duration::from_millis(1))
                        .is_ok()
                    {
                        break;
                    }
                }
                Ok::<_, ()>(Some(t))
            })
            .stage(1, true, |_: &Context<'_>, t: Tracked| Ok(Some(t)))
            .build()
    };
    for i in 0..20 {
        pipeline.push(tracked(i, &drops)).unwrap();
    }
    wait_until("two stage runs hold their items", || {
        started.load(Ordering::SeqCst) == 2
    });
    let token = pipeline.token().clone();
    drop(pipeline);
    assert!(token.is_cancelled());
    drop(gate_tx);
    wait_until("every item is destroyed", || {
        drops.load(Ordering::SeqCst) == 20
    });
    wait_until("the pool is idle", || pool.stats().running == 0);
    assert_eq!(drops.load(Ordering::SeqCst), 20);
    assert_eq!(
        started.load(Ordering::SeqCst),
        2,
        "a stage ran after the drop"
    );
}

#[test]
fn stop_waits_for_running_stages_and_destroys_everything() {
    let pool = pool(3);
    let drops = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let after_stop = Arc::new(AtomicBool::new(false));
    let pipeline = {
        let (running, after_stop) = (Arc::clone(&running), Arc::clone(&after_stop));
        Pipeline::builder(&pool)
            .max_in_flight(30)
            .stage(2, false, move |ctx: &Context<'_>, t: Tracked| {
                assert!(!after_stop.load(Ordering::SeqCst), "a stage ran after stop");
                running.fetch_add(1, Ordering::SeqCst);
                while !ctx.is_cancelled() {
                    thread::yield_now();
                }
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, ()>(Some(t))
            })
            .build()
    };
    for i in 0..30 {
        pipeline.push(tracked(i, &drops)).unwrap();
    }
    wait_until("two stages run", || running.load(Ordering::SeqCst) == 2);
    pipeline.stop();
    after_stop.store(true, Ordering::SeqCst);
    assert_eq!(
        running.load(Ordering::SeqCst),
        0,
        "stop returned with a stage running"
    );
    assert_eq!(
        drops.load(Ordering::SeqCst),
        30,
        "stop returned before every item was destroyed"
    );
}

#[test]
fn pushes_wait_for_room_with_a_timeout_and_give_the_item_back() {
    let pool = pool(2);
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release = Mutex::new(release_rx);
    let pipeline = Pipeline::builder(&pool)
        .max_in_flight(2)
        .stage(1, true, move |_: &Context<'_>, x: u32| {
            release.lock().unwrap().recv_timeout(patience()).unwrap();
            Ok::<_, ()>(Some(x))
        })
        .build();
    pipeline.push(1).unwrap();
    pipeline.push(2).unwrap();
    assert_eq!(pipeline.try_push(3), Err(PushError::Full(3)));
    let before = Instant::now();
    assert_eq!(
        pipeline.push_timeout(3, Duration::from_millis(50)),
        Err(PushError::Timeout(3))
    );
    assert!(before.elapsed() >= Duration::from_millis(50));
    // A push that waits is let in when room frees.
    thread::scope(|scope| {
        let pusher = scope.spawn(|| pipeline.push_timeout(3, patience()));
        release_tx.send(()).unwrap();
        assert_eq!(pipeline.next_timeout(patience()), Ok(1));
        assert_eq!(pusher.join().unwrap(), Ok(()));
    });
    release_tx.send(()).unwrap();
    release_tx.send(()).unwrap();
    pipeline.close_input();
    assert_eq!(pipeline.push(4), Err(PushError::Closed(4)));
    assert_eq!(pipeline.next_timeout(patience()), Ok(2));
    assert_eq!(pipeline.next_timeout(patience()), Ok(3));
    assert_eq!(pipeline.next_timeout(patience()), Err(NextError::Closed));
    assert_eq!(
        pipeline.next_timeout(Duration::ZERO),
        Err(NextError::Closed)
    );
}

#[test]
fn next_times_out_on_an_open_empty_pipeline() {
    let pool = pool(1);
    let pipeline = Pipeline::builder(&pool)
        .stage(1, false, |_: &Context<'_>, x: u8| Ok::<_, ()>(Some(x)))
        .build();
    assert_eq!(
        pipeline.next_timeout(Duration::from_millis(20)),
        Err(NextError::Timeout)
    );
    let run: Pipeline<u8, u8, ()> = Pipeline::builder(&pool).run(vec![7u8]);
    assert_eq!(
        run.push(1),
        Err(PushError::Closed(1)),
        "a pipeline run from a source takes no push"
    );
    assert_eq!(run.collect::<Vec<_>>(), [Ok(7)]);
}

#[test]
fn a_pipeline_on_a_one_thread_pool_pushes_and_takes_from_inside_a_job() {
    let pool = pool(1);
    let job = pool
        .submit(|ctx| {
            let pipeline = Pipeline::builder(ctx.pool())
                .max_in_flight(3)
                .stage(2, true, |_: &Context<'_>, x: u64| Ok::<_, ()>(Some(x + 1)))
                .stage(1, true, |_: &Context<'_>, x: u64| Ok(Some(x * 2)))
                .build();
            let mut out = Vec::new();
            for i in 0..50u64 {
                // A `next` waits in this job on the one worker: a spare runs the stage
                // jobs meanwhile.
                if i >= 3 {
                    out.push(pipeline.next().unwrap());
                }
                pipeline.push(i).unwrap();
            }
            pipeline.close_input();
            out.extend(pipeline.map(Result::unwrap));
            Ok::<_, ()>(out)
        })
        .unwrap();
    let out = job.wait().unwrap();
    assert_eq!(out, (0..50).map(|x| (x + 1) * 2).collect::<Vec<_>>());
    let from_source: Vec<u64> = Pipeline::builder(&pool)
        .stage(3, true, |_: &Context<'_>, x: u64| Ok::<_, ()>(Some(x)))
        .run(0..100u64)
        .map(Result::unwrap)
        .collect();
    assert_eq!(from_source, (0..100).collect::<Vec<_>>());
}

#[test]
fn a_channel_source_holds_no_worker_while_it_is_empty() {
    let pool = pool(1);
    let channel = Channel::new(4);
    let pipeline = Pipeline::builder(&pool)
        .max_in_flight(8)
        .stage(2, true, |_: &Context<'_>, x: u32| Ok::<_, ()>(Some(x * 10)))
        .run_channel(channel.clone());
    assert_eq!(
        pipeline.next_timeout(Duration::from_millis(20)),
        Err(NextError::Timeout)
    );
    let stats = pool.stats();
    assert_eq!(
        (stats.running, stats.spare_threads),
        (0, 0),
        "an idle pipeline holds a worker"
    );
    // The one worker is free for other work.
    assert_eq!(pool.submit(|_| Ok::<_, ()>(5)).unwrap().wait(), Ok(5));
    let producer = thread::spawn(move || {
        for i in 0..100 {
            channel.send(i).unwrap();
        }
        channel.close();
    });
    let out: Vec<u32> = pipeline.map(Result::unwrap).collect();
    producer.join().unwrap();
    assert_eq!(out, (0..100).map(|x| x * 10).collect::<Vec<_>>());
}

#[test]
fn a_stopped_channel_pipeline_passes_its_wake_on_to_other_receivers() {
    let pool = pool(2);
    let channel = Channel::<u32>::new(1);
    let pipeline: Pipeline<u32, u32, ()> = Pipeline::builder(&pool).run_channel(channel.clone());
    // The pipeline's source waits on the channel (registered); stop it, then a thread
    // receiver must still get the item (a wake spent on the stopped source is passed on).
    assert_eq!(
        pipeline.next_timeout(Duration::from_millis(10)),
        Err(NextError::Timeout)
    );
    pipeline.stop();
    let receiver = {
        let channel = channel.clone();
        thread::spawn(move || channel.recv_timeout(patience()))
    };
    channel.send(9).unwrap();
    assert_eq!(receiver.join().unwrap(), Ok(9));
}

/// One stage of a random pipeline: what it does to an item, as a pure function of it.
#[derive(Clone, Copy, Debug)]
struct StageModel {
    concurrency: usize,
    ordered: bool,
    /// Drops the items whose value is divisible by this (0: none).
    drop_every: u64,
    add: u64,
    /// Fails on the item of this value (if it reaches the stage).
    fail_at: Option<u64>,
}

impl StageModel {
    fn apply(&self, x: u64) -> Result<Option<u64>, u64> {
        if self.fail_at == Some(x) {
            return Err(x);
        }
        if self.drop_every != 0 && x % self.drop_every == 0 {
            return Ok(None);
        }
        Ok(Some(x + self.add))
    }
}

#[test]
fn random_pipelines_match_the_sequential_model() {
    let seeds = by_profile(30, 200);
    let pools: Vec<Pool> = [1, 2, 4].into_iter().map(pool).collect();
    for seed in 0..seeds {
        let mut rng = XorShift::new(seed);
        let pool = &pools[rng.below(3) as usize];
        let n_items = rng.range(0, 300);
        let n_stages = rng.range(1, 5) as usize;
        let failing_stage = (rng.below(4) == 0).then(|| rng.below(n_stages as u64) as usize);
        let mut stages: Vec<StageModel> = (0..n_stages)
            .map(|_| StageModel {
                concurrency: rng.range(1, 5) as usize,
                ordered: rng.below(3) != 0,
                drop_every: [0, 0, 3, 5, 7][rng.below(5) as usize],
                add: rng.range(1, 4) * 1000,
                fail_at: None,
            })
            .collect();
        if let Some(i) = failing_stage {
            // The value a random item has when it reaches stage `i` (it may be dropped
            // before: then nothing fails).
            let mut v = rng.below(n_items.max(1));
            for stage in &stages[..i] {
                v = stage.apply(v).ok().flatten().unwrap_or(u64::MAX);
            }
            stages[i].fail_at = Some(v);
        }
        let max_in_flight = rng.range(1, 20) as usize;
        let use_push = rng.below(2) == 0;

        // The sequential model: each item through each stage, in order.
        let mut model = Vec::new();
        let mut model_fails = false;
        'items: for x in 0..n_items {
            let mut v = x;
            for stage in &stages {
                match stage.apply(v) {
                    Ok(Some(next)) => v = next,
                    Ok(None) => continue 'items,
                    Err(_) => {
                        model_fails = true;
                        continue 'items;
                    }
                }
            }
            model.push(v);
        }

        let drops = Arc::new(AtomicUsize::new(0));
        let made = Arc::new(AtomicUsize::new(0));
        let make = {
            let (drops, made) = (Arc::clone(&drops), Arc::clone(&made));
            move |x: u64| {
                made.fetch_add(1, Ordering::SeqCst);
                tracked(x, &drops)
            }
        };
        let mut builder: jobrunner::PipelineBuilder<Tracked, Tracked, u64> =
            Pipeline::builder(pool).max_in_flight(max_in_flight);
        for stage in stages.clone() {
            builder = builder.stage(
                stage.concurrency,
                stage.ordered,
                move |_: &Context<'_>, t: Tracked| {
                    work(t.value);
                    Ok(stage.apply(t.value)?.map(|value| Tracked {
                        value,
                        _drops: t._drops,
                    }))
                },
            );
        }
        let (pipeline, pushed) = if use_push {
            let pipeline = builder.build();
            (pipeline, true)
        } else {
            (builder.run((0..n_items).map(make.clone())), false)
        };
        let mut out = Vec::new();
        let mut failure = None;
        thread::scope(|scope| {
            if pushed {
                let (pipeline, make) = (&pipeline, make.clone());
                scope.spawn(move || {
                    for x in 0..n_items {
                        if let Err(error) = pipeline.push(make(x)) {
                            assert!(
                                matches!(error, PushError::Failed(_)),
                                "seed {seed}: {error:?}"
                            );
                            break; // the refused item is dropped with the error
                        }
                    }
                    pipeline.close_input();
                });
            }
            loop {
                match pipeline.next_timeout(patience()) {
                    Ok(t) => out.push(t.value),
                    Err(NextError::Closed) => break,
                    Err(NextError::Failed(error)) => failure = Some(error),
                    Err(NextError::Timeout) => panic!("seed {seed}: the pipeline hangs"),
                }
            }
        });
        let all_ordered = stages.iter().all(|s| s.ordered);
        let failed = failure.is_some();
        match failure {
            None => {
                assert!(
                    !model_fails,
                    "seed {seed}: the model fails, the pipeline did not"
                );
                if all_ordered {
                    assert_eq!(out, model, "seed {seed}: {stages:?}");
                } else {
                    let mut sorted = out.clone();
                    sorted.sort_unstable();
                    let mut want = model.clone();
                    want.sort_unstable();
                    assert_eq!(sorted, want, "seed {seed}: {stages:?}");
                }
            }
            Some(error) => {
                assert!(model_fails, "seed {seed}: unexpected failure {error:?}");
                match error {
                    JobError::Failed(x) => assert!(
                        stages.iter().any(|s| s.fail_at == Some(x)),
                        "seed {seed}: failed on {x}"
                    ),
                    other => panic!("seed {seed}: {other:?}"),
                }
                // What came out before the failure is part of the model's output.
                let mut left: BTreeMap<u64, usize> = BTreeMap::new();
                for v in &model {
                    *left.entry(*v).or_default() += 1;
                }
                for v in &out {
                    let n = left.get_mut(v).filter(|n| **n > 0);
                    *n.unwrap_or_else(|| panic!("seed {seed}: {v} is not in the model")) -= 1;
                }
            }
        }
        drop(out);
        pipeline.stop();
        // Every item made was destroyed exactly once, and none is left.
        assert_eq!(
            drops.load(Ordering::SeqCst),
            made.load(Ordering::SeqCst),
            "seed {seed}: items destroyed != items made"
        );
        if !failed {
            assert_eq!(made.load(Ordering::SeqCst), n_items as usize, "seed {seed}");
        }
    }
}

/// On a pool whose bounded queue is full, a push and a read of no wait from outside the
/// pool do not wait for queue room: stage steps continue accepted work and take none.
#[test]
fn a_push_of_no_wait_never_waits_for_a_full_pool_queue() {
    let pool = Pool::builder()
        .threads(1)
        .queue_capacity(1)
        .build()
        .unwrap();
    let (release, held) = mpsc::channel::<()>();
    let held = Mutex::new(held);
    let (started_tx, started) = mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let blocker = pool
        .submit(move |_| {
            started_tx.lock().unwrap().send(()).unwrap();
            held.lock().unwrap().recv_timeout(patience()).map_err(drop)
        })
        .unwrap();
    started.recv_timeout(patience()).unwrap();
    let queued = pool.submit(|_| Ok::<_, ()>(())).unwrap(); // the queue's one place
    let pipeline = Arc::new(
        Pipeline::builder(&pool)
            .stage(1, true, |_: &Context<'_>, x: u32| Ok::<_, ()>(Some(x * 2)))
            .build(),
    );
    let (done_tx, done) = mpsc::channel();
    {
        let pipeline = Arc::clone(&pipeline);
        thread::spawn(move || {
            let pushed = pipeline.try_push(21).map_err(|e| format!("{e:?}"));
            let read = pipeline
                .next_timeout(Duration::ZERO)
                .err()
                .map(|e| format!("{e:?}"));
            done_tx.send((pushed, read)).unwrap();
        });
    }
    let (pushed, read) = done
        .recv_timeout(patience())
        .expect("a push and a read of no wait returned while the queue was full");
    assert_eq!(pushed, Ok(()));
    assert_eq!(read.as_deref(), Some("Timeout"));
    release.send(()).unwrap();
    blocker.wait().unwrap();
    queued.wait().unwrap();
    assert_eq!(pipeline.next_timeout(patience()).ok(), Some(42));
}
