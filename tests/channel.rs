//! `Channel`: FIFO order, try/blocking/timed/cancellable sends and receives, close,
//! iteration, items dropped with the channel, waits inside jobs while a spare worker runs
//! the work they wait for (a pipeline on a pool of one thread, under every help policy;
//! spares counted in the stats and joined at shutdown), and seeded many-producer
//! many-consumer stress in which every item arrives exactly once.
//!
//! Tests wait for events; a timeout only bounds a wait that must end, or is the feature
//! under test.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use jobrunner::{
    CancelReason, CancelToken, Channel, HelpPolicy, JobState, Pool, RecvError, SendError,
};

#[allow(dead_code)]
mod common;

use common::{by_profile, counting, patience, recv_n, wait_until, Blocker, DropCounter, XorShift};

#[test]
fn items_come_out_in_order_and_tries_say_full_and_empty() {
    let channel = Channel::new(3);
    assert_eq!(channel.capacity(), 3);
    assert_eq!(channel.try_recv(), Err(RecvError::Empty));
    for i in 0..3 {
        channel.try_send(i).unwrap();
    }
    assert_eq!(channel.len(), 3);
    assert_eq!(channel.try_send(3), Err(SendError::Full(3)));
    assert_eq!(channel.try_recv(), Ok(0));
    channel.send(3).unwrap(); // room again: no wait
    let got: Vec<_> = (0..3).map(|_| channel.recv().unwrap()).collect();
    assert_eq!(got, [1, 2, 3]);
    assert!(channel.is_empty());
}

#[test]
#[should_panic(expected = "at least one item")]
fn a_channel_of_no_capacity_is_refused() {
    let _ = Channel::<u8>::new(0);
}

#[test]
fn close_lets_receivers_drain_then_says_closed_and_refuses_sends() {
    let channel = Channel::new(4);
    channel.send("a").unwrap();
    channel.send("b").unwrap();
    assert!(channel.close());
    assert!(!channel.close(), "closed twice");
    assert!(channel.is_closed());
    assert_eq!(channel.send("c"), Err(SendError::Closed("c")));
    assert_eq!(
        channel.try_send("d").map_err(SendError::into_inner),
        Err("d")
    );
    assert_eq!(channel.recv(), Ok("a"));
    assert_eq!(channel.try_recv(), Ok("b"));
    assert_eq!(channel.recv(), Err(RecvError::Closed));
    assert_eq!(channel.try_recv(), Err(RecvError::Closed));
}

#[test]
fn close_wakes_blocked_senders_and_receivers() {
    let empty = Channel::<u32>::new(1);
    let full = Channel::new(1);
    full.send(0).unwrap();
    let (tx, rx) = mpsc::channel();
    let (started_tx, started) = mpsc::channel();
    {
        let (empty, tx, started_tx) = (empty.clone(), tx.clone(), started_tx.clone());
        thread::spawn(move || {
            started_tx.send(()).unwrap();
            tx.send(Err(empty.recv())).unwrap();
        });
    }
    {
        let full = full.clone();
        thread::spawn(move || {
            started_tx.send(()).unwrap();
            tx.send(Ok(full.send(1))).unwrap();
        });
    }
    // Most often both wait by now; either way the close must end them (a wait the close
    // did not wake would make this bounded receive fail).
    recv_n(&started, 2, "both threads started");
    empty.close();
    full.close();
    let mut ends = recv_n(&rx, 2, "a close ended each wait");
    ends.sort_by_key(Result::is_ok);
    assert_eq!(
        ends,
        [Err(Err(RecvError::Closed)), Ok(Err(SendError::Closed(1)))]
    );
    assert_eq!(full.recv(), Ok(0), "what was buffered is still received");
}

#[test]
fn a_blocked_receive_gets_the_next_send() {
    let channel = Channel::new(1);
    let (tx, rx) = mpsc::channel();
    let receiver = {
        let channel = channel.clone();
        thread::spawn(move || {
            tx.send(()).unwrap();
            channel.recv()
        })
    };
    recv_n(&rx, 1, "the receiver started");
    channel.send(7).unwrap();
    assert_eq!(receiver.join().unwrap(), Ok(7));
}

#[test]
fn a_blocked_send_goes_through_when_room_is_made() {
    let channel = Channel::new(1);
    channel.send(1).unwrap();
    let sender = {
        let channel = channel.clone();
        thread::spawn(move || channel.send(2))
    };
    assert_eq!(channel.recv(), Ok(1));
    sender.join().unwrap().unwrap();
    assert_eq!(channel.recv(), Ok(2));
}

#[test]
fn timed_waits_time_out_and_give_the_item_back() {
    let channel = Channel::new(1);
    assert_eq!(
        channel.recv_timeout(Duration::from_millis(20)),
        Err(RecvError::Timeout)
    );
    channel.send(1).unwrap();
    assert_eq!(
        channel.send_timeout(2, Duration::from_millis(20)),
        Err(SendError::Timeout(2))
    );
    assert_eq!(channel.recv_timeout(patience()), Ok(1));
    channel.send_timeout(3, patience()).unwrap();
    assert_eq!(channel.recv(), Ok(3));
}

#[test]
fn a_cancelled_token_ends_a_wait_with_its_reason() {
    let channel = Channel::<u8>::new(1);
    let token = CancelToken::new();
    let receiver = {
        let (channel, token) = (channel.clone(), token.clone());
        thread::spawn(move || channel.recv_with(&token, None))
    };
    token.cancel();
    assert_eq!(
        receiver.join().unwrap(),
        Err(RecvError::Cancelled(CancelReason::Cancelled))
    );
    // Cancelled already: a send that would wait fails at once, with its item.
    channel.send(1).unwrap();
    assert_eq!(
        channel.send_with(2, &token, None),
        Err(SendError::Cancelled(2, CancelReason::Cancelled))
    );
    // One that needs no wait still goes through.
    assert_eq!(channel.recv_with(&token, None), Ok(1));
    // A deadline on the token is a cancel too, reported as such.
    let expiring = CancelToken::with_timeout(Duration::from_millis(10));
    assert_eq!(
        channel.recv_with(&expiring, Some(patience())),
        Err(RecvError::Cancelled(CancelReason::DeadlineExceeded))
    );
}

#[test]
fn iteration_ends_when_the_channel_is_closed_and_drained() {
    let channel = Channel::new(2);
    let producer = {
        let channel = channel.clone();
        thread::spawn(move || {
            for i in 0..10 {
                channel.send(i).unwrap();
            }
            channel.close();
        })
    };
    let by_ref: Vec<_> = (&channel).into_iter().take(3).collect();
    let rest: Vec<_> = channel.into_iter().collect();
    producer.join().unwrap();
    assert_eq!(by_ref, [0, 1, 2]);
    assert_eq!(rest, (3..10).collect::<Vec<_>>());
}

#[test]
fn items_left_in_the_channel_are_dropped_with_it() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let channel = Channel::new(4);
    for _ in 0..3 {
        channel.send(DropCounter(Arc::clone(&dropped))).unwrap();
    }
    let other = channel.clone();
    drop(channel.recv().unwrap());
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    drop(channel);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "a clone still holds them"
    );
    drop(other);
    assert_eq!(dropped.load(Ordering::SeqCst), 3);
}

/// A producer job and a consumer job on a pool of one thread, over a channel of one:
/// each wait runs the other job, under every help policy.
/// Three jobs talking over channels of one on a pool of one thread: each blocked job
/// gives its place to a spare worker, which runs the next. Fails (deadlocks) with waits
/// that run queued jobs on their own stack instead: the producer, waiting for room, runs
/// the consumer on top of itself; the consumer drains, then waits for items only the
/// producer, buried below it, would send.
#[test]
fn a_pipeline_of_jobs_on_one_thread_never_deadlocks() {
    for policy in [HelpPolicy::Any, HelpPolicy::Own, HelpPolicy::Block] {
        let pool = Pool::builder()
            .threads(1)
            .help_policy(policy)
            .build()
            .unwrap();
        let (numbers, squares) = (Channel::new(1), Channel::new(1));
        let producer = {
            let numbers = numbers.clone();
            pool.submit(move |_| {
                for i in 0..100u64 {
                    numbers.send(i).map_err(drop)?;
                }
                numbers.close();
                Ok::<_, ()>(())
            })
            .unwrap()
        };
        let stage = {
            let (numbers, squares) = (numbers.clone(), squares.clone());
            pool.submit(move |_| {
                for i in &numbers {
                    squares.send(i * i).map_err(drop)?;
                }
                squares.close();
                Ok::<_, ()>(())
            })
            .unwrap()
        };
        let consumer = pool
            .submit(move |_| Ok::<_, ()>(squares.iter().sum::<u64>()))
            .unwrap();
        producer.wait().unwrap();
        stage.wait().unwrap();
        assert_eq!(
            consumer.wait(),
            Ok((0..100).map(|i| i * i).sum()),
            "{policy:?}"
        );
    }
}

/// While a job waits with a timeout, a spare worker runs the job queued behind it; the
/// wait still times out.
#[test]
fn a_timed_wait_in_a_job_helps_and_times_out() {
    let pool = Pool::builder().threads(1).build().unwrap();
    let channel = Channel::<u8>::new(1);
    let ran = Arc::new(AtomicUsize::new(0));
    let waiter = {
        let (pool, channel, ran) = (pool.clone(), channel.clone(), Arc::clone(&ran));
        pool.clone()
            .submit(move |_| {
                // Queued behind us on the only worker: it runs only if our wait helps.
                let other = pool.submit(counting(&ran)).unwrap();
                let got = channel.recv_timeout(Duration::from_millis(50));
                Ok::<_, ()>((got, other.wait().is_ok()))
            })
            .unwrap()
    };
    let (got, other_ok) = waiter.wait().unwrap();
    assert_eq!(got, Err(RecvError::Timeout));
    assert!(other_ok);
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

/// A waiting job is woken by a send from outside the pool, and by a token's cancel.
#[test]
fn a_waiting_job_is_woken_by_a_send_and_by_a_cancel() {
    let pool = Pool::builder().threads(1).build().unwrap();
    let channel = Channel::new(1);
    let token = CancelToken::new();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let receiver = {
        let (channel, token) = (channel.clone(), token.clone());
        pool.submit(move |_| {
            tx.lock().unwrap().send(()).unwrap();
            let first = channel.recv_with(&token, None);
            tx.lock().unwrap().send(()).unwrap();
            let second = channel.recv_with(&token, None);
            Ok::<_, ()>((first, second))
        })
        .unwrap()
    };
    recv_n(&rx, 1, "the job is about to wait");
    channel.send(5).unwrap();
    recv_n(&rx, 1, "the job got the item and waits again");
    token.cancel();
    assert_eq!(
        receiver.wait(),
        Ok((Ok(5), Err(RecvError::Cancelled(CancelReason::Cancelled))))
    );
}

/// A job blocked in a channel wait on a pool of one thread shows as one spare thread in
/// the stats, and the spare, asleep by then, retires once the job is back.
#[test]
fn a_blocked_job_runs_a_spare_that_retires_when_it_is_back() {
    let pool = Pool::builder().threads(1).build().unwrap();
    assert_eq!(pool.stats().spare_threads, 0);
    let channel = Channel::new(1);
    let receiver = {
        let channel = channel.clone();
        pool.submit(move |_| Ok::<_, ()>(channel.recv())).unwrap()
    };
    wait_until("a spare runs in place of the blocked worker", || {
        pool.stats().spare_threads == 1
    });
    // The spare runs jobs: this one would wait forever behind the blocked worker otherwise.
    let other = pool.submit(|_| Ok::<_, ()>(7)).unwrap();
    assert_eq!(other.wait(), Ok(7));
    // The spare goes to sleep while the worker is still blocked (it cannot retire yet):
    // the worker's return must wake it to retire.
    wait_until("the idle spare sleeps", || pool.stats().sleeping == 1);
    channel.send(3).unwrap();
    assert_eq!(receiver.wait(), Ok(Ok(3)));
    wait_until("the spare retired", || pool.stats().spare_threads == 0);
    assert_eq!(pool.stats().threads, 1);
}

/// Jobs that block and unblock at random while the pool shuts down: every worker thread
/// started meanwhile, spares included, has run its stop hook (its last act before it
/// exits) when the shutdown returns, and none of the pool's threads is left once they
/// have been reaped.
#[test]
fn shutdown_joins_every_spare() {
    let own_threads = |prefix: &str| -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                    .filter(|comm| comm.starts_with(prefix))
                    .count()
            })
            .unwrap_or(0)
    };
    for seed in 0..by_profile(10, 40u64) {
        let mut rng = XorShift::new(seed + 1);
        let prefix = format!("spj{seed}");
        let started = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicUsize::new(0));
        let pool = {
            let (started, stopped) = (Arc::clone(&started), Arc::clone(&stopped));
            Pool::builder()
                .threads(1)
                .thread_name(&prefix)
                .on_thread_start(move |_| {
                    started.fetch_add(1, Ordering::SeqCst);
                })
                .on_thread_stop(move |_| {
                    stopped.fetch_add(1, Ordering::SeqCst);
                })
                .build()
                .unwrap()
        };
        let channel = Channel::<u64>::new(1);
        for _ in 0..rng.range(1, 12) {
            let channel = channel.clone();
            let wait = Duration::from_micros(rng.range(0, 2_000));
            let _detached = pool
                .submit(move |_| Ok::<_, ()>(channel.recv_timeout(wait)))
                .unwrap();
        }
        for i in 0..rng.range(0, 6) {
            let _ = channel.try_send(i);
        }
        let report = pool.shutdown(jobrunner::ShutdownMode::Drain, Some(patience()));
        assert!(report.is_complete(), "seed {seed}: {report:?}");
        assert_eq!(
            started.load(Ordering::SeqCst),
            stopped.load(Ordering::SeqCst),
            "seed {seed}: a worker still runs after the shutdown returned"
        );
        // A joined thread can linger in /proc for a moment until the kernel reaps it.
        wait_until(&format!("seed {seed}: the pool's threads are gone"), || {
            own_threads(&format!("{prefix}-")) == 0
        });
    }
}

/// Producers and consumers, threads and jobs, on channels of random capacities, with
/// random tries and timed waits: every item arrives exactly once, and nothing waits on.
#[test]
fn many_producers_and_consumers_lose_and_duplicate_nothing() {
    let seeds = by_profile(4, 20);
    let per_producer = by_profile(300, 2_000);
    let pool = Pool::builder().threads(2).build().unwrap();
    for seed in 0..seeds {
        let mut rng = XorShift::new(seed + 1);
        let channel = Channel::new(rng.range(1, 8) as usize);
        let (producers, consumers) = (rng.range(1, 4), rng.range(1, 4));
        let received = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        let mut jobs = Vec::new();
        for p in 0..producers {
            let channel = channel.clone();
            let mut rng = XorShift::new(seed * 100 + p + 7);
            let mut produce = move || {
                for i in 0..per_producer {
                    let mut item = p * 1_000_000 + i;
                    loop {
                        let sent = match rng.below(3) {
                            0 => channel.try_send(item),
                            1 => channel.send_timeout(item, Duration::from_micros(rng.below(200))),
                            _ => channel.send(item),
                        };
                        match sent {
                            Ok(()) => break,
                            Err(error) => item = error.into_inner(),
                        }
                    }
                }
            };
            if p % 2 == 0 {
                threads.push(thread::spawn(produce));
            } else {
                jobs.push(
                    pool.submit(move |_| {
                        produce();
                        Ok::<_, ()>(())
                    })
                    .unwrap(),
                );
            }
        }
        let mut consumer_threads = Vec::new();
        let mut consumer_jobs = Vec::new();
        for c in 0..consumers {
            let (channel, received) = (channel.clone(), Arc::clone(&received));
            let mut rng = XorShift::new(seed * 100 + c + 51);
            let mut consume = move || loop {
                let got = match rng.below(3) {
                    0 => channel.try_recv(),
                    1 => channel.recv_timeout(Duration::from_micros(rng.below(200))),
                    _ => channel.recv(),
                };
                match got {
                    Ok(item) => received.lock().unwrap().push(item),
                    Err(RecvError::Closed) => return,
                    Err(_) => {}
                }
            };
            if c % 2 == 0 {
                consumer_threads.push(thread::spawn(consume));
            } else {
                consumer_jobs.push(
                    pool.submit(move |_| {
                        consume();
                        Ok::<_, ()>(())
                    })
                    .unwrap(),
                );
            }
        }
        for t in threads {
            t.join().unwrap();
        }
        for j in jobs {
            j.wait().unwrap();
        }
        channel.close();
        for t in consumer_threads {
            t.join().unwrap();
        }
        for j in consumer_jobs {
            j.wait().unwrap();
        }
        let received = received.lock().unwrap();
        let unique: BTreeSet<_> = received.iter().copied().collect();
        let expected = (producers * per_producer) as usize;
        assert_eq!(
            received.len(),
            expected,
            "seed {seed}: lost or duplicated items"
        );
        assert_eq!(unique.len(), expected, "seed {seed}: duplicated items");
    }
    wait_until("the pool is idle", || pool.stats().running == 0);
}

/// Queues `consumers` jobs on a pool of `threads` (all in the injector before the first
/// one starts), each feeding a channel of 2 from a child job it submits (queued on its
/// own worker's deque) and then receiving from it (blocked): every one must end with the
/// sum its producer sent, within `patience()` of the previous one.
fn consumers_feeding_themselves(threads: usize, consumers: u64) {
    let pool = Pool::builder().threads(threads).build().unwrap();
    // Jobs that hold every worker (outside jobrunner's waits: no spare starts) until
    // every consumer is queued.
    let blockers: Vec<Blocker> = (0..threads).map(|_| Blocker::start(&pool)).collect();
    let (done_tx, done_rx) = mpsc::channel();
    for _ in 0..consumers {
        let done_tx = done_tx.clone();
        let job = pool
            .submit(move |ctx| {
                let channel = Channel::<u64>::new(2);
                let sender = channel.clone();
                let producer = ctx
                    .pool()
                    .submit(move |_| {
                        for i in 0..8 {
                            sender.send(i).map_err(drop)?;
                        }
                        sender.close();
                        Ok::<_, ()>(())
                    })
                    .map_err(drop)?;
                let sum: u64 = channel.iter().sum();
                producer.wait().map_err(drop)?;
                // 0 + 1 + ... + 7: anything else fails the job.
                if sum == 28 {
                    Ok(())
                } else {
                    Err(())
                }
            })
            .unwrap();
        job.handle().on_end(move |end| {
            let _ = done_tx.send(end);
        });
        drop(job);
    }
    drop(done_tx);
    blockers.into_iter().for_each(Blocker::finish);
    let mut ended = 0;
    while ended < consumers {
        match done_rx.recv_timeout(patience()) {
            Ok(end) => {
                assert_eq!(end, JobState::Succeeded, "consumer {ended}");
                ended += 1;
            }
            Err(_) => {
                let stats = pool.stats();
                // Deadlocked: dropping the pool would wait for its jobs for ever.
                std::mem::forget(pool);
                panic!("{ended} of {consumers} consumers ended; deadlocked with {stats:?}");
            }
        }
    }
    // Every spare retires once nothing blocks.
    wait_until("the spares retired", || pool.stats().spare_threads == 0);
}

/// More consumer jobs than the pool had threads and spares together (a pool of one had
/// at most 4 spares), each feeding its channel from a child job it submits and then
/// receiving. Found by the soak benchmark (`benches/soak.rs`): a spare took the
/// injector's jobs before it stole, so every spare took a consumer, blocked in turn, and
/// the pool ran out of spares with every producer queued behind a blocked consumer: a
/// deadlock (this test panicked after `patience()`). Now a pool has 256 spares or more,
/// and a spare steals before it takes from the injector.
#[test]
fn more_blocked_consumers_than_spares_never_deadlock() {
    consumers_feeding_themselves(1, 24);
}

/// The same on a pool of two, with 200 consumers: 25 times the 8 spares such a pool had
/// (with 64, the old order got through by luck more often than not).
#[test]
fn consumers_beyond_the_old_spare_cap_never_deadlock_a_pool_of_two() {
    consumers_feeding_themselves(2, 200);
}

/// Many more consumers (4000) than a pool of one has spares (256): only the spares'
/// order (steal the producers queued in the deques before taking more consumers from the
/// injector, one at a time) keeps the pool from running out of spares, which the cap
/// alone cannot: with the spares taking the injector first, 256 spares ran out here
/// (226 of 4000 consumers ended), while stealing first never needed more than 16.
#[test]
fn consumers_beyond_the_spare_cap_never_deadlock_a_pool_of_one() {
    consumers_feeding_themselves(1, 4000);
}
