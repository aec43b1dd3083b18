//! `SharedSlice`: arrays in shared memory that cross to a worker and back by descriptor.
//!
//! Each test takes a lock: one of them counts this process's descriptors.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use procpool::{Direction, FrozenSlice, Pool, PoolBuilder, SharedSlice, Side, TaskError};
use procpool_worker::{DoubleShared, MakeShared, MarkThenCrash, OpenFds, SumRanges, SumShared};

procpool::test_support!();

static ALONE: Mutex<()> = Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    procpool_worker::link();
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn builder() -> PoolBuilder {
    Pool::builder().workers(2)
}

fn codec_error(error: &TaskError) -> (Side, Direction, String) {
    match error {
        TaskError::Codec {
            side,
            direction,
            message,
        } => (*side, *direction, message.clone()),
        other => panic!("not a codec error: {other:?}"),
    }
}

#[test]
fn an_array_changed_in_place_comes_back() {
    let _alone = alone();
    let pool = builder().build().unwrap();
    let input: Vec<f64> = (0..100_000).map(f64::from).collect();
    let shared = SharedSlice::from_slice(&input).unwrap();
    let out = pool.submit(DoubleShared(shared)).unwrap().wait().unwrap();
    assert_eq!(out.len(), input.len());
    assert!(out.iter().zip(&input).all(|(o, i)| *o == 2.0 * i));
}

#[test]
fn a_worker_makes_a_new_array_and_an_empty_one() {
    let _alone = alone();
    let pool = builder().build().unwrap();
    let out = pool.submit(MakeShared(1 << 20)).unwrap().wait().unwrap();
    assert_eq!(out.len(), 1 << 20);
    assert!(out.iter().enumerate().all(|(i, &x)| x == i as u64));
    let empty = pool.submit(MakeShared(0)).unwrap().wait().unwrap();
    assert!(empty.is_empty());
}

#[test]
fn several_arrays_in_one_task() {
    let _alone = alone();
    let pool = builder().build().unwrap();
    let arrays = vec![
        SharedSlice::from_slice(&[1u32, 2, 3]).unwrap(),
        SharedSlice::zeroed(0).unwrap(),
        SharedSlice::from_slice(&[10u32; 1000]).unwrap(),
    ];
    let sums = pool.submit(SumShared(arrays)).unwrap().wait().unwrap();
    assert_eq!(sums, vec![6, 0, 10_000]);
}

#[test]
fn more_arrays_than_a_frame_carries_is_a_codec_error_in_the_parent() {
    let _alone = alone();
    let pool = builder().build().unwrap();
    let arrays = (0..33)
        .map(|_| SharedSlice::from_slice(&[1u32]).unwrap())
        .collect();
    let error = pool.submit(SumShared(arrays)).unwrap().wait().unwrap_err();
    let (side, direction, message) = codec_error(&error);
    assert_eq!((side, direction), (Side::Parent, Direction::ToWorker));
    assert!(message.contains("at most 32"), "{message}");
    // The pool is fine afterwards.
    let ok = vec![SharedSlice::from_slice(&[5u32]).unwrap()];
    assert_eq!(pool.submit(SumShared(ok)).unwrap().wait().unwrap(), vec![5]);
}

/// Shared, not copied: the retry of a task whose worker crashed sees what the lost
/// attempt wrote (as docs/FAILURES.md says).
#[test]
fn a_retried_task_sees_what_the_lost_attempt_wrote() {
    let _alone = alone();
    let pool = builder().retries(1).build().unwrap();
    let marked = SharedSlice::zeroed(4096).unwrap();
    assert_eq!(pool.submit(MarkThenCrash(marked)).unwrap().wait(), Ok(1));
    let pool = builder().build().unwrap();
    let marked = SharedSlice::zeroed(4096).unwrap();
    let error = pool
        .submit(MarkThenCrash(marked))
        .unwrap()
        .wait()
        .unwrap_err();
    assert_eq!(error.signal(), Some(11), "{error:?}");
}

/// A map's tasks may hold shared arrays; their outputs may not (a batch's records
/// carry no descriptors): such an output fails its task with a codec error that says
/// why, and the others go on.
#[test]
fn in_a_map_a_shared_array_in_an_output_is_a_codec_error() {
    let _alone = alone();
    let pool = builder().build().unwrap();
    let inputs = (0..3).map(|_| DoubleShared(SharedSlice::from_slice(&[1.0]).unwrap()));
    for outcome in pool.map(inputs) {
        let (side, direction, message) = codec_error(&outcome.unwrap_err());
        assert_eq!((side, direction), (Side::Worker, Direction::ToParent));
        assert!(message.contains("travels only"), "{message}");
    }
    // An empty array needs no memory, so it has no descriptor and travels anywhere.
    let empty: Vec<_> = pool.map([MakeShared(0)]).collect();
    assert!(empty[0].as_ref().unwrap().is_empty());
    for outcome in pool.map((1..4).map(MakeShared)) {
        let (side, direction, message) = codec_error(&outcome.unwrap_err());
        assert_eq!((side, direction), (Side::Worker, Direction::ToParent));
        assert!(message.contains("travels only"), "{message}");
    }
}

/// `0..len` as a read-only shared array, and the sum of `from..to` of it.
fn numbers(len: u64) -> FrozenSlice<u64> {
    let data: Vec<u64> = (0..len).collect();
    SharedSlice::from_slice(&data).unwrap().freeze()
}

fn range_sum(from: usize, to: usize) -> u64 {
    (from as u64..to as u64).sum()
}

fn sum_ranges(arrays: &[&FrozenSlice<u64>], from: usize, to: usize) -> SumRanges {
    SumRanges {
        arrays: arrays.iter().map(|a| (*a).clone()).collect(),
        from,
        to,
        abort: false,
    }
}

/// The descriptors open in the parent and in its one worker (whose pid must not have
/// changed), once the pool's threads and the worker's batch journal are there.
fn open_fds_both(pool: &Pool, worker: Option<u32>) -> (usize, usize) {
    assert!(common::eventually(Duration::from_secs(10), || {
        common::has_thread("procpool-output")
    }));
    let (pid, in_worker) = pool.submit(OpenFds).unwrap().wait().unwrap();
    if let Some(worker) = worker {
        assert_eq!(pid, worker, "the same worker");
    }
    (common::open_fds(), in_worker)
}

/// 10,000 tasks of a map read one shared array: the right sums, its descriptor sent
/// once per batch, and no descriptor left open in the parent or the worker after.
#[test]
fn a_map_of_ten_thousand_tasks_reads_one_shared_array() {
    let _alone = alone();
    let pool = builder().workers(1).build().unwrap();
    let data = numbers(1_000_000);
    // Warm: the worker has its batch journal.
    let warm: Vec<_> = pool
        .map((0..100).map(|i| sum_ranges(&[&data], i, i + 1)))
        .collect();
    assert!(warm.iter().all(Result::is_ok));
    let (pid, _) = pool.submit(OpenFds).unwrap().wait().unwrap();
    let before = open_fds_both(&pool, Some(pid));
    let tasks = (0..10_000).map(|i| sum_ranges(&[&data], i * 100, (i + 1) * 100));
    let mut n = 0;
    for (i, sum) in pool.map(tasks).enumerate() {
        assert_eq!(sum, Ok(range_sum(i * 100, (i + 1) * 100)), "task {i}");
        n += 1;
    }
    assert_eq!(n, 10_000);
    let unordered: u64 = pool
        .map_unordered((0..1000).map(|i| sum_ranges(&[&data], i * 1000, (i + 1) * 1000)))
        .map(|(_, sum)| sum.unwrap())
        .sum();
    assert_eq!(unordered, range_sum(0, 1_000_000));
    assert_eq!(open_fds_both(&pool, Some(pid)), before);
}

/// Tasks of one map may carry different arrays: each its own (the batches are cut so
/// that a frame's descriptors stay within bounds), or several shared ones.
#[test]
fn a_map_s_tasks_may_carry_different_arrays() {
    let _alone = alone();
    let pool = builder().build().unwrap();
    // 300 tasks with an array of their own each: more descriptors than a frame takes.
    let own = (0..300u32).map(|i| SumShared(vec![SharedSlice::from_slice(&[i; 10]).unwrap()]));
    for (i, sums) in pool.map(own).enumerate() {
        assert_eq!(sums, Ok(vec![10 * i as u64]), "task {i}");
    }
    let (a, b, c) = (numbers(1000), numbers(2000), numbers(3000));
    let tasks = (0..3000).map(|i| {
        let from = i % 900;
        match i % 3 {
            0 => sum_ranges(&[&a, &b], from, from + 100),
            1 => sum_ranges(&[&b, &c], from, from + 100),
            _ => sum_ranges(&[&a, &b, &c], from, from + 100),
        }
    });
    for (i, sum) in pool.map(tasks).enumerate() {
        let arrays = [2, 2, 3][i % 3];
        let from = i % 900;
        assert_eq!(sum, Ok(arrays * range_sum(from, from + 100)), "task {i}");
    }
    // Inputs without arrays first, then with: a map finds out as it goes.
    let late = (0..500u32).map(|i| match i < 400 {
        true => SumShared(Vec::new()),
        false => SumShared(vec![SharedSlice::from_slice(&[i; 2]).unwrap()]),
    });
    for (i, sums) in pool.map(late).enumerate() {
        let expected = if i < 400 { vec![] } else { vec![2 * i as u64] };
        assert_eq!(sums, Ok(expected), "task {i}");
    }
    // A task with more arrays than a value carries fails alone, in the parent.
    let too_many = (0..33)
        .map(|_| SharedSlice::from_slice(&[1u32]).unwrap())
        .collect();
    let tasks = vec![
        SumShared(vec![SharedSlice::from_slice(&[2u32]).unwrap()]),
        SumShared(too_many),
        SumShared(vec![SharedSlice::from_slice(&[3u32]).unwrap()]),
    ];
    let outcomes: Vec<_> = pool.map(tasks).collect();
    assert_eq!(outcomes[0], Ok(vec![2]));
    let (side, _, message) = codec_error(outcomes[1].as_ref().unwrap_err());
    assert_eq!(side, Side::Parent);
    assert!(message.contains("at most 32"), "{message}");
    assert_eq!(outcomes[2], Ok(vec![3]));
}

/// A task that crashes its worker mid-batch fails alone: the tasks after it run on the
/// next worker, which gets the batch's descriptors again; none is left open.
#[test]
fn a_crash_mid_batch_costs_only_its_task() {
    let _alone = alone();
    let pool = builder().workers(1).core_dumps(false).build().unwrap();
    let data = numbers(100_000);
    let warm: Vec<_> = pool
        .map((0..100).map(|i| sum_ranges(&[&data], i, i + 1)))
        .collect();
    assert!(warm.iter().all(Result::is_ok));
    let (parent_before, worker_before) = open_fds_both(&pool, None);
    let crash_at = 3_000;
    let tasks = (0..5_000).map(|i| SumRanges {
        abort: i == crash_at,
        ..sum_ranges(&[&data], i * 10, (i + 1) * 10)
    });
    for (i, sum) in pool.map(tasks).enumerate() {
        if i == crash_at {
            let error = sum.unwrap_err();
            assert_eq!(error.signal(), Some(6), "{error:?}");
        } else {
            assert_eq!(sum, Ok(range_sum(i * 10, (i + 1) * 10)), "task {i}");
        }
    }
    // A new worker, warm like the first (it ran batches of several tasks).
    let (parent_after, worker_after) = open_fds_both(&pool, None);
    assert_eq!(parent_after, parent_before);
    assert_eq!(worker_after, worker_before);
}

/// Descriptors go with their frames and are closed once used: many round trips leave
/// none open in the parent.
#[test]
fn round_trips_leave_no_descriptor_open() {
    let _alone = alone();
    let pool = builder().build().unwrap();
    // Warm up first: worker links and pipes are open for the pool's life, and so is the
    // thread that reads the pipes, with its wake-up pipe. It starts when a slot first
    // has a moment (its first tick, or going idle): wait for it.
    let warm = SharedSlice::from_slice(&[1.0]).unwrap();
    pool.submit(DoubleShared(warm)).unwrap().wait().unwrap();
    assert!(common::eventually(Duration::from_secs(10), || {
        common::has_thread("procpool-output")
    }));
    let before = common::open_fds();
    for round in 0..300 {
        let shared = SharedSlice::from_slice(&[f64::from(round); 1000]).unwrap();
        let out = pool.submit(DoubleShared(shared)).unwrap().wait().unwrap();
        assert_eq!(out[999], 2.0 * f64::from(round));
    }
    let made = pool.submit(MakeShared(10)).unwrap().wait().unwrap();
    drop(made);
    assert_eq!(common::open_fds(), before);
}

#[test]
#[ignore = "run by every_task_gets_an_outcome_when_descriptors_run_out"]
fn descriptor_starved_parent() {
    use nix::sys::resource::{setrlimit, Resource};
    procpool_worker::link();
    let pool = Pool::builder().workers(1).build().unwrap();
    // Warm: the worker is up and its link and pipe are open.
    pool.submit(MakeShared(1)).unwrap().wait().unwrap();
    let open = common::open_fds() as u64;
    setrlimit(Resource::RLIMIT_NOFILE, open + 24, open + 24).unwrap();
    // Each output holds a descriptor until it is waited for, so these run out.
    let handles: Vec<_> = (0..60)
        .map(|_| pool.submit(MakeShared(16)).unwrap())
        .collect();
    let mut ok = 0;
    let mut errors = std::collections::BTreeMap::new();
    let mut kept = Vec::new();
    for handle in handles {
        match handle.wait() {
            Ok(array) => {
                assert_eq!(array[15], 15);
                ok += 1;
                kept.push(array);
            }
            Err(e) => {
                let kind = format!("{e:?}");
                let kind = kind.split([' ', '{', '(']).next().unwrap().to_owned();
                *errors.entry(kind).or_insert(0) += 1;
            }
        }
    }
    println!(
        "outcomes: {} ok: {ok} errors: {errors:?}",
        ok + errors.values().sum::<i32>()
    );
}

/// A parent that runs out of descriptors (outputs holding shared arrays it keeps) gets a
/// typed error for the tasks that could not come back, and every task its outcome: no
/// hang, no task without one.
#[test]
fn every_task_gets_an_outcome_when_descriptors_run_out() {
    let _alone = alone();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "descriptor_starved_parent",
            "--include-ignored",
            "--nocapture",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("outcomes: "))
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    assert!(line.starts_with("outcomes: 60 "), "{line}");
    assert!(line.contains("errors: {\""), "nothing ran out: {line}");
    eprintln!("{line}");
}
