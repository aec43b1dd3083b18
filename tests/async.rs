//! The feature `async` with real worker processes, under tokio's current-thread and
//! multi-thread runtimes and `futures::executor::block_on`: awaited handles and their
//! typed errors, cancellation by drop (a timeout, a lost `select!`), maps as streams,
//! and the awaited submit under a small in-flight limit.
#![cfg(feature = "async")]

mod common;

use std::collections::HashSet;
use std::future::{Future, IntoFuture};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FusedStream, StreamExt};
use procpool::{Launch, Pool, PoolBuilder, TaskError, TaskOptions};
use procpool_worker::{Fault, PidAfter, Square};

procpool::test_support!();

fn builder() -> PoolBuilder {
    procpool_worker::link();
    Pool::builder()
        .workers(2)
        .core_dumps(false)
        .stderr(procpool::OutputMode::Null)
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// Runs `scenario` on the pool under tokio's current-thread runtime, spawned on tokio's
/// multi-thread runtime (so it must be `Send`, and is woken from other threads), and
/// under `futures::executor::block_on`: one pool serves every executor.
fn on_each_executor<F, Fut>(pool: &Arc<Pool>, scenario: F)
where
    F: Fn(Arc<Pool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    on_tokio(pool, &scenario);
    futures::executor::block_on(scenario(pool.clone()));
}

/// Runs `future` as a task of tokio's multi-thread runtime, and its panic as this one.
fn spawned_on_multi_thread(future: impl Future<Output = ()> + Send + 'static) {
    let spawned = multi_thread().block_on(async { tokio::spawn(future).await });
    if let Err(e) = spawned {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// The same on the two tokio runtimes only (for tokio's timers).
fn on_tokio<F, Fut>(pool: &Arc<Pool>, scenario: F)
where
    F: Fn(Arc<Pool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    current_thread().block_on(scenario(pool.clone()));
    spawned_on_multi_thread(scenario(pool.clone()));
}

/// The pids of both workers of a two-worker pool: two tasks that overlap in time land
/// on a worker each.
async fn both_workers(pool: &Pool) -> HashSet<u32> {
    let a = pool.submit_async(PidAfter(300)).await.unwrap();
    let b = pool.submit_async(PidAfter(300)).await.unwrap();
    // `futures::join!` takes futures, not `IntoFuture`s.
    let (a, b) = futures::join!(a.into_future(), b.into_future());
    let pids = HashSet::from([a.unwrap(), b.unwrap()]);
    assert_eq!(pids.len(), 2, "one task per worker");
    pids
}

/// After a hung task was cancelled, the pool still has both its workers, and exactly
/// one of them is new: the hung task's worker was killed and replaced.
async fn one_worker_replaced(pool: &Pool, before: &HashSet<u32>) -> u32 {
    let after = both_workers(pool).await;
    let gone: Vec<u32> = before.difference(&after).copied().collect();
    assert_eq!(gone.len(), 1, "before {before:?}, after {after:?}");
    gone[0]
}

fn assert_gone(pid: u32) {
    assert!(
        common::eventually(Duration::from_secs(10), || !common::is_running(pid)),
        "the cancelled task's worker {pid} is still running"
    );
}

#[test]
fn awaited_handles_give_outputs_and_typed_errors() {
    let pool = Arc::new(builder().build().unwrap());
    on_each_executor(&pool, |pool| async move {
        let square = pool.submit_async(Square(7)).await.unwrap();
        let panic = pool
            .submit_async(Fault::Panic("boom".into()))
            .await
            .unwrap();
        let segfault = pool.submit_async(Fault::Segfault).await.unwrap();
        let abort = pool.submit_async(Fault::Abort).await.unwrap();
        assert_eq!(square.await, Ok(49));
        let panicked = panic.await.unwrap_err();
        assert!(panicked.is_panic(), "{panicked:?}");
        assert!(panicked.to_string().contains("boom"), "{panicked}");
        assert_eq!(segfault.await.unwrap_err().signal(), Some(11));
        assert_eq!(abort.await.unwrap_err().signal(), Some(6));
        // A handle from the blocking submit is awaited alike, and per-task options
        // hold under the awaited one.
        assert_eq!(pool.submit(Square(3)).unwrap().await, Ok(9));
        let quick = TaskOptions::new().timeout(Duration::from_millis(200));
        let late = pool.submit_async_with(Fault::Hang, &quick).await.unwrap();
        assert!(late.await.unwrap_err().is_timeout());
    });
}

#[test]
fn task_functions_are_called_and_awaited() {
    use procpool_worker::functions::{multiply_add, panic_at_zero};

    let pool = Arc::new(builder().build().unwrap());
    on_each_executor(&pool, |pool| async move {
        let sum = pool.call_async(multiply_add, (3, 4, 5)).await.unwrap();
        let panic = pool
            .call_async(panic_at_zero, (0, "no zero".to_owned()))
            .await
            .unwrap();
        assert_eq!(sum.await, Ok(17));
        let panicked = panic.await.unwrap_err();
        assert!(panicked.is_panic(), "{panicked:?}");
        assert!(panicked.to_string().contains("no zero"), "{panicked}");
        // The call's own options, over the function's and the pool's.
        let quick = TaskOptions::new().timeout(Duration::from_millis(150));
        let spun = pool
            .call_async_with(procpool_worker::functions::spin, 5_000, &quick)
            .await
            .unwrap();
        match spun.await {
            Err(TaskError::TimedOut { after, .. }) => {
                assert_eq!(after, Duration::from_millis(150));
            }
            other => panic!("expected the call's own timeout, got {other:?}"),
        }
    });
    // A closed pool hands the input back, not a wrapper around it.
    pool.shutdown();
    let refused = futures::executor::block_on(pool.call_async(multiply_add, (1, 2, 3)));
    let refused = refused.unwrap_err();
    assert!(refused.is_closed());
    assert_eq!(refused.into_inner(), (1, 2, 3));
}

#[test]
fn a_timeout_drops_the_future_and_cancels_the_hung_task() {
    let pool = Arc::new(builder().build().unwrap());
    on_tokio(&pool, |pool| async move {
        let before = both_workers(&pool).await;
        let hang = pool.submit_async(Fault::Hang).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(300), hang).await;
        assert!(waited.is_err(), "a hung task finished: {waited:?}");
        // The next tasks run, on a new worker beside the one that was free.
        let replaced = one_worker_replaced(&pool, &before).await;
        assert_gone(replaced);
    });
}

#[test]
fn a_timeout_on_a_lent_future_lets_the_task_go_on() {
    let pool = Arc::new(builder().build().unwrap());
    on_tokio(&pool, |pool| async move {
        let mut slow = pool
            .submit_async(Fault::Sleep(600))
            .await
            .unwrap()
            .into_future();
        let waited = tokio::time::timeout(Duration::from_millis(50), &mut slow).await;
        assert!(waited.is_err());
        assert!(!slow.is_finished());
        assert_eq!(slow.await, Ok(600));
    });
}

#[test]
fn a_select_arm_that_loses_cancels_its_task() {
    let pool = Arc::new(builder().build().unwrap());
    // `futures::select!` runs under every executor; the handles go in as they are.
    on_each_executor(&pool, |pool| async move {
        let before = both_workers(&pool).await;
        let mut hang = pool.submit_async(Fault::Hang).await.unwrap().into_future();
        let mut quick = pool
            .submit_async(Fault::Sleep(200))
            .await
            .unwrap()
            .into_future();
        futures::select! {
            _ = hang => panic!("a hung task finished"),
            out = quick => assert_eq!(out, Ok(200)),
        }
        drop(hang);
        let replaced = one_worker_replaced(&pool, &before).await;
        assert_gone(replaced);
    });
    // `tokio::select!` drops the losing future itself.
    on_tokio(&pool, |pool| async move {
        let before = both_workers(&pool).await;
        let hang = pool.submit_async(Fault::Hang).await.unwrap();
        let quick = pool.submit_async(Fault::Sleep(200)).await.unwrap();
        tokio::select! {
            _ = hang => panic!("a hung task finished"),
            out = quick => assert_eq!(out, Ok(200)),
        }
        let replaced = one_worker_replaced(&pool, &before).await;
        assert_gone(replaced);
    });
}

/// Faults at every 100th input from 7 on; the others return their input.
fn faulty(i: u64) -> Fault {
    if i % 100 == 7 {
        Fault::Panic(format!("input {i}"))
    } else {
        Fault::Ok(i)
    }
}

#[test]
fn a_map_as_a_stream_yields_one_outcome_per_input() {
    // Two places in flight: the map's batches also wait for room at the gate.
    for limit in [usize::MAX, 2] {
        let pool = Arc::new(builder().max_in_flight(limit).build().unwrap());
        on_each_executor(&pool, |pool| async move {
            let n = 1_000;
            let mut seen = vec![false; n];
            let mut outcomes = pool.map_unordered((0..n as u64).map(faulty)).into_stream();
            while let Some((index, outcome)) = outcomes.next().await {
                assert!(!seen[index], "input {index} came twice");
                seen[index] = true;
                if index % 100 == 7 {
                    assert!(outcome.unwrap_err().is_panic());
                } else {
                    assert_eq!(outcome, Ok(index as u64));
                }
            }
            assert!(seen.iter().all(|&s| s), "an input had no outcome");
            assert!(outcomes.is_terminated());
            assert_eq!(outcomes.next().await, None);
            // In order, and with options of the map's own.
            let squares: Vec<_> = pool
                .map_with((0..300).map(Square), &TaskOptions::new().retries(1))
                .into_stream()
                .collect()
                .await;
            let expected: Vec<_> = (0..300u64).map(|i| Ok(i * i)).collect();
            assert_eq!(squares, expected);
        });
    }
}

#[test]
fn a_dropped_stream_cancels_what_it_has_out() {
    let pool = Arc::new(builder().build().unwrap());
    on_tokio(&pool, |pool| async move {
        let before = both_workers(&pool).await;
        {
            let mut hangs = pool.map_unordered([Fault::Hang, Fault::Hang]).into_stream();
            let first = tokio::time::timeout(Duration::from_millis(300), hangs.next()).await;
            assert!(first.is_err());
        }
        let after = both_workers(&pool).await;
        assert!(before.is_disjoint(&after), "{before:?} {after:?}");
        for pid in before {
            assert_gone(pid);
        }
    });
}

/// Counts the polls of a future: more than one means it returned `Pending` (waited).
async fn counting_polls<F: Future + Unpin>(mut future: F, polls: &AtomicUsize) -> F::Output {
    std::future::poll_fn(|cx| {
        polls.fetch_add(1, Ordering::Relaxed);
        std::pin::Pin::new(&mut future).poll(cx)
    })
    .await
}

#[test]
fn an_awaited_submit_waits_for_room_without_blocking_the_thread() {
    let pool = Arc::new(builder().max_in_flight(2).build().unwrap());
    let runtime = current_thread();
    runtime.block_on(async {
        // Another task on the same (only) thread: it ticks while the submitter waits,
        // which it could not do if the submitter blocked the thread.
        let ticks = Arc::new(AtomicUsize::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let submitter = tokio::spawn({
            let pool = pool.clone();
            let ticks = ticks.clone();
            async move {
                let mut handles = Vec::new();
                let mut waited = 0;
                let mut ticks_while_waiting = 0;
                for i in 0..200u64 {
                    let polls = AtomicUsize::new(0);
                    let before = ticks.load(Ordering::Relaxed);
                    let submit = pool.submit_async(Fault::Sleep(5 + i % 3));
                    handles.push(counting_polls(submit, &polls).await.unwrap());
                    if polls.load(Ordering::Relaxed) > 1 {
                        waited += 1;
                        ticks_while_waiting += ticks.load(Ordering::Relaxed) - before;
                    }
                }
                for (i, handle) in handles.into_iter().enumerate() {
                    assert_eq!(handle.await, Ok(5 + i as u64 % 3));
                }
                (waited, ticks_while_waiting)
            }
        });
        let (waited, ticks_while_waiting) =
            tokio::time::timeout(Duration::from_secs(120), submitter)
                .await
                .expect("200 awaited submits under max_in_flight(2) finished")
                .unwrap();
        ticker.abort();
        // Two places for 200 tasks: nearly every submit waits for one.
        assert!(waited >= 150, "only {waited} submits waited");
        assert!(
            ticks_while_waiting >= 50,
            "the other task ticked {ticks_while_waiting} times while submits waited"
        );
    });
}

#[test]
fn a_waiting_submit_dropped_holds_no_place_and_keeps_no_one_waiting() {
    let pool = Arc::new(builder().max_in_flight(1).build().unwrap());
    current_thread().block_on(async {
        let busy = pool.submit_async(Fault::Sleep(300)).await.unwrap();
        let mut first = pool.submit_async(Square(2));
        let mut second = pool.submit_async(Square(3));
        assert!(futures::poll!(&mut first).is_pending());
        assert!(futures::poll!(&mut second).is_pending());
        // The freed place wakes `first`, which is dropped without taking it: `second`
        // is woken in its stead.
        assert_eq!(busy.await, Ok(300));
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(30), second)
            .await
            .expect("the next waiting submit got the place");
        assert_eq!(second.unwrap().await, Ok(9));
        // Dropped while still queued: no place lost either.
        let busy = pool.submit_async(Fault::Sleep(100)).await.unwrap();
        let mut queued = pool.submit_async(Square(4));
        assert!(futures::poll!(&mut queued).is_pending());
        drop(queued);
        assert_eq!(busy.await, Ok(100));
        assert_eq!(pool.try_submit(Square(5)).unwrap().await, Ok(25));
    });
}

#[test]
fn a_closed_pool_hands_the_awaited_submit_its_task_back() {
    let pool = builder().max_in_flight(1).build().unwrap();
    futures::executor::block_on(async {
        let busy = pool.submit_async(Fault::Sleep(200)).await.unwrap();
        let mut waiting = pool.submit_async(Square(6));
        assert!(futures::poll!(&mut waiting).is_pending());
        pool.shutdown();
        let refused = waiting.await.unwrap_err();
        assert!(refused.is_closed());
        assert_eq!(refused.into_inner().0, 6);
        let refused = pool.submit_async(Square(7)).await.unwrap_err();
        assert!(refused.is_closed());
        // What was queued before the shutdown still runs.
        assert_eq!(busy.await, Ok(200));
    });
}

#[test]
fn a_broken_pool_hands_the_awaited_submit_its_task_back() {
    let pool = builder()
        .workers(1)
        .launch(Launch::Binary("/bin/false".into()))
        .max_start_failures(1)
        .build()
        .unwrap();
    futures::executor::block_on(async {
        let failed = pool.submit_async(Square(1)).await.unwrap().await;
        assert!(failed.unwrap_err().is_worker_start());
        for _ in 0..1_000 {
            match pool.submit_async(Square(8)).await {
                Ok(handle) => assert!(handle.await.unwrap_err().is_worker_start()),
                Err(refused) => {
                    assert!(refused.is_broken(), "{refused:?}");
                    assert_eq!(refused.into_inner().0, 8);
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the pool never refused as broken");
    });
}

#[test]
fn a_stream_of_a_closed_pool_fails_each_input() {
    let pool = builder().build().unwrap();
    pool.shutdown();
    let outcomes: Vec<_> = futures::executor::block_on(
        pool.map_unordered((0..10).map(Square))
            .into_stream()
            .collect(),
    );
    assert_eq!(outcomes.len(), 10);
    assert!(outcomes
        .iter()
        .all(|(_, outcome)| outcome.as_ref().unwrap_err().is_pool_closed()));
}

/// What a spawned task holds must be `Send`; a checked claim, not a hope.
#[test]
fn the_futures_and_streams_are_send() {
    fn send<T: Send>(_: &T) {}
    let pool = builder().build().unwrap();
    let submit = pool.submit_async(Square(1));
    send(&submit);
    let handle = futures::executor::block_on(submit).unwrap().into_future();
    send(&handle);
    send(&pool.map([Square(1)]).into_stream());
    send(&pool.map_unordered([Square(1)]).into_stream());
    assert_eq!(futures::executor::block_on(handle), Ok(1));
    assert_eq!(
        TaskError::Cancelled,
        futures::executor::block_on(async {
            let handle = pool.submit(Fault::Sleep(10_000)).unwrap();
            assert!(handle.cancel());
            handle.await.unwrap_err()
        })
    );
}

/// A waker that counts its wake-ups.
#[derive(Default)]
struct WakeCount(AtomicUsize);

impl std::task::Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<WakeCount>, std::task::Waker) {
    let count = Arc::new(WakeCount::default());
    (count.clone(), count.clone().into())
}

#[test]
fn a_stream_turned_back_into_a_map_leaves_the_gate_s_queue() {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    let pool = builder().max_in_flight(1).build().unwrap();
    let busy = pool.submit(Fault::Sleep(300)).unwrap();
    // The stream waits for the one place, in the gate's queue; then it is made a map
    // again, to be iterated on this thread later.
    let (_stale, stale_waker) = counting_waker();
    let mut stream = pool.map_unordered([Square(3)]).into_stream();
    let polled = stream.poll_next_unpin(&mut Context::from_waker(&stale_waker));
    assert!(polled.is_pending());
    let map = stream.into_inner();
    // A submit waits behind it.
    let (woken, waker) = counting_waker();
    let mut waiting = pool.submit_async(Square(2));
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut waiting).poll(&mut cx).is_pending());
    // The freed place wakes the submit: the map no longer waits as a stream.
    assert_eq!(busy.wait(), Ok(300));
    assert_eq!(
        woken.0.load(Ordering::SeqCst),
        1,
        "the waiting submit was not woken"
    );
    let Poll::Ready(handle) = Pin::new(&mut waiting).poll(&mut cx) else {
        panic!("a woken submit found no place");
    };
    assert_eq!(handle.unwrap().wait(), Ok(4));
    assert_eq!(map.collect::<Vec<_>>(), [(0, Ok(9))]);
}

/// Polling a finished submit is a bug of the caller's, and panics; it must not take
/// an in-flight place on its way (nobody would ever give it back).
#[test]
fn a_submit_polled_after_it_finished_panics_without_taking_a_place() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::pin::Pin;
    use std::task::Context;

    let pool = builder().max_in_flight(1).build().unwrap();
    let mut submit = pool.submit_async(Square(2));
    let handle = futures::executor::block_on(&mut submit).unwrap();
    assert_eq!(handle.wait(), Ok(4));
    let (_count, waker) = counting_waker();
    let polled = catch_unwind(AssertUnwindSafe(|| {
        let _ = Pin::new(&mut submit).poll(&mut Context::from_waker(&waker));
    }));
    assert!(
        polled.is_err(),
        "a finished submit polled again did not panic"
    );
    drop(submit);
    let next = pool.try_submit(Square(3));
    assert!(next.is_ok(), "the place was kept: {next:?}");
    assert_eq!(next.unwrap().wait(), Ok(9));
}

/// A map whose input has run out ends without an in-flight place: it does not wait for
/// one to learn that there is nothing left to send, polled as a stream or iterated.
/// Here the pool's one place is taken by a task that runs until it is cancelled.
#[test]
fn a_map_ends_without_waiting_for_room_it_does_not_need() {
    use std::task::{Context, Poll};

    let pool = builder().max_in_flight(1).build().unwrap();
    for iterate in [false, true] {
        let (woken, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut stream = pool.map_unordered([Square(3)]).into_stream();
        // The one input goes out; the stream waits for its outcome (and for a place).
        assert!(stream.poll_next_unpin(&mut cx).is_pending());
        assert!(common::eventually(Duration::from_secs(10), || {
            woken.0.load(Ordering::SeqCst) > 0
        }));
        // The place its task freed is taken before the stream is polled again.
        let hang = pool.try_submit(Fault::Hang).unwrap();
        let first = loop {
            match stream.poll_next_unpin(&mut cx) {
                Poll::Ready(item) => break item,
                Poll::Pending => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        assert_eq!(first, Some((0, Ok(9))));
        let ended = if iterate {
            let mut map = stream.into_inner();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::scope(|s| {
                s.spawn(move || tx.send(map.next().is_none()).unwrap());
                let ended = rx.recv_timeout(Duration::from_secs(5)).is_ok();
                // Let the map go on either way, so the test ends.
                hang.cancel();
                ended
            })
        } else {
            let ended = matches!(stream.poll_next_unpin(&mut cx), Poll::Ready(None));
            hang.cancel();
            ended
        };
        assert!(
            ended,
            "the map's end waited for a place (iterated: {iterate})"
        );
        assert_eq!(hang.wait(), Err(TaskError::Cancelled));
    }
}

/// A stream waiting in the gate's queue, polled with a new waker each time, then
/// dropped: before its turn came (it leaves the queue) or after (its wake-up goes to
/// the submit behind it). Either way the submit gets the place and is woken for it.
#[test]
fn a_stream_dropped_while_it_waits_for_a_place_keeps_no_one_waiting() {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    let pool = builder().max_in_flight(1).build().unwrap();
    for woken_first in [false, true] {
        let busy = pool.submit(Fault::Sleep(200)).unwrap();
        let mut stream = pool.map_unordered([Square(3)]).into_stream();
        let (first, first_waker) = counting_waker();
        let (second, second_waker) = counting_waker();
        assert!(stream
            .poll_next_unpin(&mut Context::from_waker(&first_waker))
            .is_pending());
        assert!(stream
            .poll_next_unpin(&mut Context::from_waker(&second_waker))
            .is_pending());
        let (behind, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut waiting = pool.submit_async(Square(2));
        assert!(Pin::new(&mut waiting).poll(&mut cx).is_pending());
        if woken_first {
            assert_eq!(busy.wait(), Ok(200));
            // The stream was first in the queue: its latest waker had the wake-up.
            assert_eq!(first.0.load(Ordering::SeqCst), 0);
            assert_eq!(second.0.load(Ordering::SeqCst), 1);
            assert_eq!(behind.0.load(Ordering::SeqCst), 0);
            drop(stream);
        } else {
            drop(stream);
            assert_eq!(busy.wait(), Ok(200));
        }
        assert_eq!(
            behind.0.load(Ordering::SeqCst),
            1,
            "woken first: {woken_first}"
        );
        let Poll::Ready(handle) = Pin::new(&mut waiting).poll(&mut cx) else {
            panic!("the woken submit found no place");
        };
        assert_eq!(handle.unwrap().wait(), Ok(4));
    }
}
