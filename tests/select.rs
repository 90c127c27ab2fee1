//! `wait_any`: the index of a ready waitable of every kind (job, group, channel receive
//! and send, stream, pipeline, token), the first in order when several are; a timeout; a waiter
//! woken by each kind of change made by another thread; a wait inside a job on a pool of
//! one thread; consumers racing on one channel (level-triggered: each item taken once);
//! and registrations taken back, so that a long loop leaves nothing behind.
//!
//! Tests wait for events; a timeout only bounds a wait that must end, or is the feature
//! under test.

use std::collections::BTreeSet;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use jobrunner::{wait_any, CancelToken, Channel, Group, Pool, Waitable};

#[allow(dead_code)]
mod common;

use common::{assert_not_yet, patience, pool, recv_n, wait_until, NOT_YET};

#[test]
fn each_kind_is_ready_when_its_operation_would_not_wait() {
    let pool = pool(2);
    let done = pool.submit(|_| Ok::<_, ()>(1)).unwrap();
    done.handle().wait();
    let group: Group<u8, ()> = pool.group();
    group.submit(|_| Ok(2)).unwrap();
    wait_until("the group's job ends", || {
        Waitable::group(&group).is_ready()
    });
    let full = Channel::new(1);
    full.send(3).unwrap();
    let token = CancelToken::new();
    token.cancel();
    let stream = pool.stream(1, |_, tx| tx.send(4).map_err(drop)).unwrap();
    wait_until("the stream's item is there", || {
        Waitable::stream(&stream).is_ready()
    });

    assert_eq!(wait_any(&[Waitable::job(&done)], None), Some(0));
    assert_eq!(wait_any(&[Waitable::group(&group)], None), Some(0));
    assert_eq!(wait_any(&[Waitable::recv(&full)], None), Some(0));
    assert_eq!(wait_any(&[Waitable::token(&token)], None), Some(0));
    assert_eq!(wait_any(&[Waitable::stream(&stream)], None), Some(0));
    // Full: no room for a send.
    assert_eq!(
        wait_any(&[Waitable::send(&full)], Some(Duration::from_millis(1))),
        None
    );
    assert_eq!(full.try_recv(), Ok(3));
    assert_eq!(wait_any(&[Waitable::send(&full)], None), Some(0));
    // Empty: nothing to receive, until it is closed.
    assert_eq!(
        wait_any(&[Waitable::recv(&full)], Some(Duration::from_millis(1))),
        None
    );
    full.close();
    assert_eq!(wait_any(&[Waitable::recv(&full)], None), Some(0));
    // The first ready one, in order.
    let quiet = Channel::<u8>::new(1);
    let never = CancelToken::new();
    let items = [
        Waitable::recv(&quiet),
        Waitable::token(&never),
        Waitable::job(&done),
        Waitable::token(&token),
    ];
    assert_eq!(wait_any(&items, None), Some(2));
}

#[test]
fn nothing_ready_times_out_and_an_empty_list_returns_none() {
    let quiet = Channel::<u8>::new(1);
    let never = CancelToken::new();
    let start = Instant::now();
    let items = [Waitable::recv(&quiet), Waitable::token(&never)];
    assert_eq!(wait_any(&items, Some(Duration::from_millis(20))), None);
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert_eq!(wait_any(&items, Some(Duration::ZERO)), None);
    assert_eq!(wait_any(&[], None), None);
    let start = Instant::now();
    assert_eq!(wait_any(&[], Some(Duration::from_millis(5))), None);
    assert!(start.elapsed() >= Duration::from_millis(5));
}

/// One waiter thread per kind of change: it waits on a quiet channel and on the thing
/// under test (index 1), and must be woken by the change only.
#[test]
fn a_waiter_is_woken_by_each_kind_of_change() {
    let pool = pool(2);
    type Setup =
        Box<dyn FnOnce(&Pool) -> (Box<dyn FnOnce() + Send>, Box<dyn Fn() -> usize + Send>)>;
    let cases: Vec<(&str, Setup)> = vec![
        (
            "a job ends",
            Box::new(|pool: &Pool| {
                let (tx, rx) = mpsc::channel::<()>();
                let rx = Mutex::new(rx);
                let job = pool
                    .submit(move |_| rx.lock().unwrap().recv_timeout(patience()).map_err(drop))
                    .unwrap();
                let handle = job.handle();
                let quiet = Channel::<u8>::new(1);
                (
                    Box::new(move || tx.send(()).unwrap()),
                    Box::new(move || {
                        let r = wait_any(
                            &[Waitable::recv(&quiet), Waitable::handle(&handle)],
                            Some(patience()),
                        );
                        let _ = &job;
                        r.unwrap_or(99)
                    }),
                )
            }),
        ),
        (
            "a group's job ends",
            Box::new(|pool: &Pool| {
                let group: Arc<Group<(), ()>> = Arc::new(pool.group());
                let (tx, rx) = mpsc::channel::<()>();
                let rx = Mutex::new(rx);
                group
                    .submit(move |_| rx.lock().unwrap().recv_timeout(patience()).map_err(drop))
                    .unwrap();
                let quiet = Channel::<u8>::new(1);
                (
                    Box::new(move || tx.send(()).unwrap()),
                    Box::new(move || {
                        wait_any(
                            &[Waitable::recv(&quiet), Waitable::group(&group)],
                            Some(patience()),
                        )
                        .unwrap_or(99)
                    }),
                )
            }),
        ),
        (
            "an item is sent",
            Box::new(|_: &Pool| {
                let channel = Channel::<u8>::new(1);
                let sender = channel.clone();
                let quiet = Channel::<u8>::new(1);
                (
                    Box::new(move || sender.send(1).unwrap()),
                    Box::new(move || {
                        wait_any(
                            &[Waitable::recv(&quiet), Waitable::recv(&channel)],
                            Some(patience()),
                        )
                        .unwrap_or(99)
                    }),
                )
            }),
        ),
        (
            "room is made",
            Box::new(|_: &Pool| {
                let channel = Channel::<u8>::new(1);
                channel.send(1).unwrap();
                let receiver = channel.clone();
                let quiet = Channel::<u8>::new(1);
                (
                    Box::new(move || assert_eq!(receiver.recv(), Ok(1))),
                    Box::new(move || {
                        wait_any(
                            &[Waitable::recv(&quiet), Waitable::send(&channel)],
                            Some(patience()),
                        )
                        .unwrap_or(99)
                    }),
                )
            }),
        ),
        (
            "a channel is closed",
            Box::new(|_: &Pool| {
                let channel = Channel::<u8>::new(1);
                let closer = channel.clone();
                let quiet = Channel::<u8>::new(1);
                (
                    Box::new(move || {
                        closer.close();
                    }),
                    Box::new(move || {
                        wait_any(
                            &[Waitable::recv(&quiet), Waitable::recv(&channel)],
                            Some(patience()),
                        )
                        .unwrap_or(99)
                    }),
                )
            }),
        ),
        (
            "a token is cancelled",
            Box::new(|_: &Pool| {
                let token = CancelToken::new();
                let canceller = token.clone();
                let quiet = Channel::<u8>::new(1);
                (
                    Box::new(move || {
                        canceller.cancel();
                    }),
                    Box::new(move || {
                        wait_any(
                            &[Waitable::recv(&quiet), Waitable::token(&token)],
                            Some(patience()),
                        )
                        .unwrap_or(99)
                    }),
                )
            }),
        ),
        (
            "an item comes out of a pipeline",
            Box::new(|pool: &Pool| {
                let pipeline = jobrunner::Pipeline::builder(pool)
                    .stage(1, true, |_: &jobrunner::Context<'_>, x: u8| {
                        Ok::<_, ()>(Some(x + 1))
                    })
                    .build();
                let pusher = Arc::new(pipeline);
                let watched = Arc::clone(&pusher);
                let quiet = Channel::<u8>::new(1);
                (
                    Box::new(move || pusher.push(1).unwrap()),
                    Box::new(move || {
                        wait_any(
                            &[Waitable::recv(&quiet), Waitable::pipeline(&watched)],
                            Some(patience()),
                        )
                        .unwrap_or(99)
                    }),
                )
            }),
        ),
        (
            "a stream's producer sends",
            Box::new(|pool: &Pool| {
                let (tx, rx) = mpsc::channel::<()>();
                let rx = Mutex::new(rx);
                let stream = pool
                    .stream(1, move |_, out| {
                        rx.lock().unwrap().recv_timeout(patience()).map_err(drop)?;
                        out.send(5u8).map_err(drop)
                    })
                    .unwrap();
                let quiet = Channel::<u8>::new(1);
                (
                    Box::new(move || tx.send(()).unwrap()),
                    Box::new(move || {
                        wait_any(
                            &[Waitable::recv(&quiet), Waitable::stream(&stream)],
                            Some(patience()),
                        )
                        .unwrap_or(99)
                    }),
                )
            }),
        ),
    ];
    for (what, setup) in cases {
        let (change, wait) = setup(&pool);
        let (tx, rx) = mpsc::channel();
        let waiter = thread::spawn(move || tx.send(wait()).unwrap());
        assert_not_yet(&rx, NOT_YET, what);
        change();
        assert_eq!(recv_n(&rx, 1, what), vec![1], "{what}");
        waiter.join().unwrap();
    }
}

/// A job of a one-thread pool waits for an item that only a job queued behind it sends:
/// its wait lends its place to a spare worker.
#[test]
fn a_wait_inside_a_job_lets_the_job_it_waits_for_run() {
    let pool = pool(1);
    let channel = Channel::new(1);
    let stop = CancelToken::new();
    let waiter = {
        let (inner, channel, stop) = (pool.clone(), channel.clone(), stop.clone());
        pool.submit(move |_| {
            let sender = {
                let channel = channel.clone();
                inner
                    .submit(move |_| channel.send(9u8).map_err(drop))
                    .unwrap()
            };
            let ready = wait_any(
                &[Waitable::token(&stop), Waitable::recv(&channel)],
                Some(patience()),
            );
            sender.wait().map_err(drop)?;
            Ok::<_, ()>((ready, channel.try_recv().ok()))
        })
        .unwrap()
    };
    assert_eq!(waiter.wait(), Ok((Some(1), Some(9))));
}

/// Consumers racing on one channel with `wait_any` then `try_recv`: every item is taken
/// exactly once, and everyone sees the close.
#[test]
fn racing_consumers_take_each_item_once() {
    let pool = pool(2);
    let channel = Channel::new(4);
    let taken = Arc::new(Mutex::new(Vec::new()));
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let (channel, taken) = (channel.clone(), Arc::clone(&taken));
            pool.submit(move |_| {
                loop {
                    if wait_any(&[Waitable::recv(&channel)], Some(patience())).is_none() {
                        return Err("hung");
                    }
                    match channel.try_recv() {
                        Ok(item) => taken.lock().unwrap().push(item),
                        Err(jobrunner::RecvError::Closed) => return Ok(()),
                        Err(_) => {} // another consumer took it: wait again
                    }
                }
            })
            .unwrap()
        })
        .collect();
    for i in 0..2_000u32 {
        channel.send(i).unwrap();
    }
    channel.close();
    for consumer in consumers {
        assert_eq!(consumer.wait(), Ok(()));
    }
    let taken = taken.lock().unwrap();
    assert_eq!(taken.len(), 2_000);
    assert_eq!(taken.iter().copied().collect::<BTreeSet<_>>().len(), 2_000);
}

/// A group is ready for `wait_any` as soon as a member's end is visible through the
/// member's handle (its end is published just before the group records it: the same
/// window as `group_sees_at_once_a_member_end_its_handle_has_seen` in tests/group.rs).
/// Repeated: the window is a few instructions.
#[test]
fn a_group_is_ready_once_a_member_end_is_seen() {
    let pool = Pool::builder().threads(2).build().unwrap();
    let rounds = if cfg!(debug_assertions) { 200 } else { 3000 };
    for round in 0..rounds {
        let group: Group<usize, ()> = Group::new(&pool, Default::default());
        let handle = group.submit(move |_| Ok(round)).unwrap();
        assert_eq!(handle.wait(), jobrunner::JobState::Succeeded);
        assert_eq!(
            wait_any(&[Waitable::group(&group)], Some(Duration::ZERO)),
            Some(0),
            "round {round}: the group is not ready after its member's end"
        );
    }
}
