//! `Stream`: a producer job read lazily. Order and end; backpressure (the producer is
//! never more than the capacity ahead); a producer's failure, panic or cancel read after
//! the items it sent; the reader's drop stopping the producer (its send fails `Closed`
//! and its context reports cancellation) and dropping the buffered items once each; a
//! producer cancelled before it ran; timed reads; a reader job on a pool of one thread.
//!
//! Tests wait for events; a timeout only bounds a wait that must end, or is the feature
//! under test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use jobrunner::{
    CancelReason, CancelToken, JobError, JobState, SendError, StreamError, SubmitOptions,
};

#[allow(dead_code)]
mod common;

use common::{patience, pool, recv_n, wait_until, DropCounter};

#[test]
fn items_come_in_order_then_the_stream_ends() {
    let pool = pool(2);
    let stream = pool
        .stream(3, |_, tx| {
            for i in 0..100u32 {
                tx.send(i).map_err(drop)?;
            }
            Ok::<_, ()>(())
        })
        .unwrap();
    let items: Vec<u32> = stream.map(Result::unwrap).collect();
    assert_eq!(items, (0..100).collect::<Vec<_>>());
}

#[test]
fn the_producer_is_never_more_than_the_capacity_ahead() {
    let pool = pool(2);
    let sent = Arc::new(AtomicUsize::new(0));
    let mut stream = {
        let sent = Arc::clone(&sent);
        pool.stream(3, move |_, tx| {
            for i in 0..20usize {
                tx.send(i).map_err(drop)?;
                sent.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, ()>(())
        })
        .unwrap()
    };
    for read in 0..20 {
        // Unread: at most the capacity buffered, so the producer has sent `read + 3`.
        let ahead = (read + 3).min(20);
        wait_until("the producer fills the buffer", || {
            sent.load(Ordering::SeqCst) == ahead
        });
        assert_eq!(stream.buffered(), ahead - read);
        assert_eq!(stream.next(), Some(Ok(read)));
        assert!(sent.load(Ordering::SeqCst) <= read + 1 + 3);
    }
    assert_eq!(stream.next(), None);
}

#[test]
fn a_failure_is_read_after_the_items_sent_before_it() {
    let pool = pool(2);
    let stream = pool
        .stream(8, |_, tx| {
            for i in 0..3 {
                tx.send(i).map_err(|_| "gone".to_owned())?;
            }
            Err("bad input line 4".to_owned())
        })
        .unwrap();
    let read: Vec<_> = stream.collect();
    assert_eq!(
        read,
        vec![
            Ok(0),
            Ok(1),
            Ok(2),
            Err(JobError::Failed("bad input line 4".to_owned()))
        ]
    );
}

#[test]
fn a_panic_is_read_after_the_items_sent_before_it() {
    common::quiet_expected_panics();
    let pool = pool(2);
    let mut stream = pool
        .stream(8, |_, tx| {
            tx.send(7).map_err(drop)?;
            panic!("{}: producer", common::EXPECTED);
            #[allow(unreachable_code)]
            Ok::<_, ()>(())
        })
        .unwrap();
    assert_eq!(stream.next(), Some(Ok(7)));
    match stream.next() {
        Some(Err(JobError::Panicked(message))) => assert!(message.contains("producer")),
        other => panic!("{other:?}"),
    }
    assert_eq!(stream.next(), None);
    assert_eq!(stream.next(), None);
}

#[test]
fn dropping_the_stream_stops_the_producer_and_drops_what_it_buffered() {
    let pool = pool(2);
    let dropped = Arc::new(AtomicUsize::new(0));
    let (tx_seen, rx_seen) = mpsc::channel();
    let tx_seen = Mutex::new(tx_seen);
    let mut stream = {
        let dropped = Arc::clone(&dropped);
        pool.stream(4, move |ctx, tx| {
            let mut sent = 0;
            loop {
                match tx.send(DropCounter(Arc::clone(&dropped))) {
                    Ok(()) => sent += 1,
                    Err(error) => {
                        let closed = matches!(error, SendError::Closed(_));
                        drop(error); // the item comes back: dropped here, once
                        let seen = (closed, ctx.is_cancelled(), tx.is_closed(), sent);
                        tx_seen.lock().unwrap().send(seen).unwrap();
                        return Err(());
                    }
                }
            }
        })
        .unwrap()
    };
    drop(stream.next().unwrap().unwrap()); // 1 read and dropped
    wait_until("the producer fills the buffer", || stream.buffered() == 4);
    let producer = stream.producer().clone();
    drop(stream);
    let (closed, cancelled, is_closed, sent) = recv_n(&rx_seen, 1, "the producer's send fails")[0];
    assert!(closed, "the send failed with Closed");
    assert!(is_closed);
    assert!(
        cancelled,
        "the context reports the stop when the send fails"
    );
    assert_eq!(producer.wait(), JobState::Cancelled);
    // Every item sent was dropped once: the one read, the buffered ones with the stream,
    // and the one whose send failed.
    wait_until("every item is dropped", || {
        dropped.load(Ordering::SeqCst) == sent + 1
    });
}

#[test]
fn a_producer_cancelled_before_it_ran_ends_the_stream_cancelled() {
    let pool = pool(1);
    let token = CancelToken::new();
    let ran = Arc::new(AtomicUsize::new(0));
    let mut stream = {
        let ran = Arc::clone(&ran);
        pool.stream_with(
            SubmitOptions::new()
                .token(&token)
                .delay(Duration::from_secs(3600)),
            2,
            move |_, tx| {
                ran.fetch_add(1, Ordering::SeqCst);
                tx.send(1u8).map_err(drop)
            },
        )
        .unwrap()
    };
    assert_eq!(
        stream.next_timeout(Duration::from_millis(1)),
        Err(StreamError::Timeout)
    );
    token.cancel();
    assert_eq!(
        stream.next(),
        Some(Err(JobError::Cancelled(CancelReason::Cancelled)))
    );
    assert_eq!(stream.next(), None);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn cancelling_the_producer_ends_the_stream_after_the_items_sent() {
    let pool = pool(2);
    let (tx_go, rx_go) = mpsc::channel::<()>();
    let rx_go = Mutex::new(rx_go);
    let mut stream = pool
        .stream(8, move |ctx, tx| {
            tx.send(1).map_err(drop)?;
            tx.send(2).map_err(drop)?;
            // Waits to be cancelled, then fails: a cancelled job's error is `Cancelled`.
            let _ = rx_go.lock().unwrap().recv_timeout(patience());
            assert!(ctx.is_cancelled());
            Err::<(), ()>(())
        })
        .unwrap();
    wait_until("two items sent", || stream.buffered() == 2);
    assert!(!stream.producer().cancel(), "running: asked to stop");
    drop(tx_go);
    let read: Vec<_> = std::iter::from_fn(|| stream.next()).collect();
    assert_eq!(
        read,
        vec![
            Ok(1),
            Ok(2),
            Err(JobError::Cancelled(CancelReason::Cancelled))
        ]
    );
}

/// A producer blocked in a send (the reader is behind) whose submit token is cancelled:
/// the send fails at once, and the reader gets what was buffered, then `Cancelled`.
#[test]
fn cancelling_the_token_of_a_blocked_producer_ends_its_send() {
    let pool = pool(2);
    let token = CancelToken::new();
    let (tx_seen, rx_seen) = mpsc::channel();
    let tx_seen = Mutex::new(tx_seen);
    let mut stream = pool
        .stream_with(SubmitOptions::new().token(&token), 2, move |ctx, tx| {
            let mut next = 0;
            while tx.send(next).is_ok() {
                next += 1;
            }
            tx_seen.lock().unwrap().send(ctx.is_cancelled()).unwrap();
            Err(())
        })
        .unwrap();
    wait_until("the buffer is full", || stream.buffered() == 2);
    token.cancel();
    assert_eq!(recv_n(&rx_seen, 1, "the send fails"), vec![true]);
    let read: Vec<_> = std::iter::from_fn(|| stream.next()).collect();
    assert_eq!(
        read,
        vec![
            Ok(0),
            Ok(1),
            Err(JobError::Cancelled(CancelReason::Cancelled))
        ]
    );
}

/// A producer asked to stop that takes its time to return: its side is closed at once,
/// but a timed read (and `wait_any`) still waits for its job to end, within the timeout,
/// instead of past it.
#[test]
fn a_timed_read_is_bounded_while_a_stopped_producer_returns() {
    let pool = pool(2);
    let (tx_go, rx_go) = mpsc::channel::<()>();
    let rx_go = Mutex::new(rx_go);
    let (tx_sent, rx_sent) = mpsc::channel::<()>();
    let tx_sent = Mutex::new(tx_sent);
    let mut stream = pool
        .stream(4, move |_, tx| {
            tx.send(1).map_err(drop)?;
            tx_sent.lock().unwrap().send(()).unwrap();
            // Asked to stop, it still finishes something first.
            let _ = rx_go.lock().unwrap().recv_timeout(patience());
            Err::<(), ()>(())
        })
        .unwrap();
    recv_n(&rx_sent, 1, "the item is sent");
    stream.producer().cancel();
    assert_eq!(stream.next_timeout(patience()), Ok(Some(1)));
    let start = std::time::Instant::now();
    assert_eq!(
        stream.next_timeout(Duration::from_millis(20)),
        Err(StreamError::Timeout)
    );
    assert!(start.elapsed() < patience());
    assert_eq!(
        jobrunner::wait_any(
            &[jobrunner::Waitable::stream(&stream)],
            Some(Duration::from_millis(5))
        ),
        None,
        "not ready while the producer has not returned"
    );
    drop(tx_go);
    assert_eq!(
        jobrunner::wait_any(&[jobrunner::Waitable::stream(&stream)], Some(patience())),
        Some(0)
    );
    assert_eq!(
        stream.next_timeout(Duration::ZERO),
        Err(StreamError::Producer(JobError::Cancelled(
            CancelReason::Cancelled
        )))
    );
}

#[test]
fn a_timed_read_times_out_then_gets_the_item() {
    let pool = pool(2);
    let (tx_go, rx_go) = mpsc::channel::<()>();
    let rx_go = Mutex::new(rx_go);
    let mut stream = pool
        .stream(1, move |_, tx| {
            rx_go
                .lock()
                .unwrap()
                .recv_timeout(patience())
                .map_err(drop)?;
            tx.send("late").map_err(drop)
        })
        .unwrap();
    assert_eq!(
        stream.next_timeout(Duration::from_millis(5)),
        Err(StreamError::Timeout)
    );
    tx_go.send(()).unwrap();
    assert_eq!(stream.next_timeout(patience()), Ok(Some("late")));
    assert_eq!(stream.next_timeout(patience()), Ok(None));
    assert_eq!(stream.next_timeout(patience()), Ok(None));
}

#[test]
fn a_failure_read_with_a_timeout_is_a_producer_error() {
    let pool = pool(1);
    let mut stream = pool.stream::<u8, _, _>(1, |_, _| Err("no input")).unwrap();
    assert_eq!(
        stream.next_timeout(patience()),
        Err(StreamError::Producer(JobError::Failed("no input")))
    );
    assert_eq!(stream.next_timeout(patience()), Ok(None));
}

/// The reader is a job of a one-thread pool, and the producer is queued behind it: the
/// reader's wait lends its place to a spare worker, which runs the producer.
#[test]
fn a_reader_job_on_a_pool_of_one_thread_reads_everything() {
    let pool = pool(1);
    let reader = {
        let inner = pool.clone();
        pool.submit(move |_| {
            let stream = inner
                .stream(1, |_, tx| {
                    (0..50u64).try_for_each(|i| tx.send(i)).map_err(drop)
                })
                .unwrap();
            stream
                .map(|item| item.map_err(drop))
                .sum::<Result<u64, ()>>()
        })
        .unwrap()
    };
    assert_eq!(reader.wait(), Ok((0..50).sum()));
}

/// Streams started and dropped at random points, many times: no item is lost or
/// dropped twice, and no producer is left running.
#[test]
fn streams_dropped_at_random_points_lose_nothing() {
    let pool = pool(2);
    for seed in 0..common::by_profile(50, 300u64) {
        let mut rng = common::XorShift::new(seed + 1);
        let made = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let total = rng.range(0, 40) as usize;
        let mut stream = {
            let (made, dropped) = (Arc::clone(&made), Arc::clone(&dropped));
            pool.stream(rng.range(1, 5) as usize, move |_, tx| {
                for _ in 0..total {
                    made.fetch_add(1, Ordering::SeqCst);
                    tx.send(DropCounter(Arc::clone(&dropped))).map_err(drop)?;
                }
                Ok::<_, ()>(())
            })
            .unwrap()
        };
        let reads = rng.range(0, 45) as usize;
        let mut got = 0;
        for _ in 0..reads {
            match stream.next() {
                Some(Ok(item)) => {
                    got += 1;
                    drop(item);
                }
                Some(Err(error)) => panic!("seed {seed}: {error:?}"),
                None => break,
            }
        }
        let producer = stream.producer().clone();
        drop(stream);
        producer.wait();
        assert!(got <= total);
        wait_until("every item made is dropped once", || {
            dropped.load(Ordering::SeqCst) == made.load(Ordering::SeqCst)
        });
    }
}
