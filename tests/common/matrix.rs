//! The fault matrix: one function per fault, each building its pool from the launch
//! mode under test and asserting the exact outcome. Each launch mode's test file calls
//! every function here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use procpool::{Direction, OutputMode, OutputStream, PoolBuilder, SharedSlice, Side, TaskError};

#[allow(
    unused_imports,
    reason = "named by `fault_matrix!`, which not every test binary of `common` uses"
)]
pub(crate) use super::functions::{
    a_task_function_s_own_retries_are_the_ones_that_count,
    a_task_function_s_own_timeout_is_the_one_that_counts, task_function_faults_are_typed,
    task_functions_run_through_call_and_map_fn,
};
use procpool_worker::{
    micros_since_epoch, read_tally, BadOutput, CStdioPrint, Double, Fault, PanickyError,
    PanicsOnDecode, PanicsOnEncode, PanicsWithBadPayload, ParentPid, PidAfter, Reverse, Square,
    SumRanges, Tally, Undecodable, Unregistered, WorkerPid,
};

fn one<T: procpool::Task>(builder: PoolBuilder, task: T) -> Result<T::Output, TaskError> {
    let pool = builder.build().expect("pool builds");
    pool.submit(task).expect("pool accepts").wait()
}

/// After a fault, the same pool still serves: the fault cost one worker, not the pool.
fn fault_then_healthy(builder: PoolBuilder, fault: Fault) -> TaskError {
    let pool = builder.workers(1).build().expect("pool builds");
    let error = pool.submit(fault).unwrap().wait().unwrap_err();
    assert_eq!(
        pool.submit(Square(12)).unwrap().wait(),
        Ok(144),
        "after {error}"
    );
    error
}

pub(crate) fn squares_in_order(b: PoolBuilder) {
    let pool = b.build().unwrap();
    let out: Vec<u64> = pool.map((0..200).map(Square)).map(Result::unwrap).collect();
    assert_eq!(out, (0..200u64).map(|n| n * n).collect::<Vec<_>>());
}

/// A map batches quick tasks. A segfault in the middle of a batch fails that task
/// alone: the tasks before it keep their outputs and are not run again, the tasks after
/// it run on the next worker, and every task runs exactly once.
fn crash_mid_batch(b: PoolBuilder, tasks: u64, crash_at: u64, pad: usize) {
    let pool = b.workers(1).core_dumps(false).build().unwrap();
    let log = std::env::temp_dir().join(format!(
        "procpool-tally-{}-{}-{crash_at}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&log);
    let inputs = (0..tasks).map(|n| Tally {
        log: log.clone(),
        n,
        pad,
        crash: n == crash_at,
        sleep_ms: 0,
    });
    let outs: Vec<_> = pool.map(inputs).collect();
    let runs = read_tally(&log);
    let _ = std::fs::remove_file(&log);
    assert_eq!(outs.len() as u64, tasks);
    for (n, out) in (0..).zip(&outs) {
        match out {
            Err(e) if n == crash_at => assert_eq!(e.signal(), Some(11), "{e:?}"),
            Ok((m, _, bytes)) if n != crash_at => {
                assert_eq!((*m, bytes.len()), (n, pad));
            }
            other => panic!("task {n}: {other:?}"),
        }
        assert_eq!(
            runs.get(&n).map(|r| r.0),
            Some(1),
            "task {n} ran {:?} times",
            runs.get(&n)
        );
    }
    let pid = |n: u64| outs[n as usize].as_ref().unwrap().1;
    // The crashed task ran in the worker of the task before it; the one after, in a new one.
    assert_eq!(runs[&crash_at].1, pid(crash_at - 1));
    assert_ne!(pid(crash_at - 1), pid(crash_at + 1));
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A number no other call in this process gets, for file names.
pub(crate) fn unique() -> usize {
    COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub(crate) fn a_crash_mid_batch_fails_that_task_alone(b: PoolBuilder) {
    crash_mid_batch(b, 3_000, 2_000, 0);
}

/// The tasks of a map share one read-only array, which each batch brings: to a worker
/// that recycles, and to the one that replaces a worker crashed mid-batch.
pub(crate) fn a_map_s_tasks_share_an_array_across_workers(b: PoolBuilder) {
    let pool = b
        .workers(2)
        .max_tasks_per_worker(700)
        .core_dumps(false)
        .build()
        .unwrap();
    let numbers: Vec<u64> = (0..10_000).collect();
    let data = SharedSlice::from_slice(&numbers).unwrap().freeze();
    let (tasks, crash_at) = (3_000, 1_234);
    let range = |i: usize| (i % 9_000, i % 9_000 + 1_000);
    let inputs = (0..tasks).map(|i| SumRanges {
        arrays: vec![data.clone()],
        from: range(i).0,
        to: range(i).1,
        abort: i == crash_at,
    });
    let mut seen = 0;
    for (i, sum) in pool.map(inputs).enumerate() {
        seen += 1;
        if i == crash_at {
            assert_eq!(sum.unwrap_err().signal(), Some(6));
            continue;
        }
        let (from, to) = range(i);
        assert_eq!(sum, Ok(numbers[from..to].iter().sum()), "task {i}");
    }
    assert_eq!(seen, tasks);
}

/// The same with outputs that overflow the batch journal, so part of the batch has
/// already been sent back when the crash comes.
pub(crate) fn a_crash_mid_batch_after_a_partial_answer(b: PoolBuilder) {
    crash_mid_batch(b, 400, 300, 150 << 10);
}

/// A fresh process per task, in a `map`: each new worker gets the first task of a
/// batch before it is ready. A crash fails that task alone; every other task runs
/// once, in a process of its own, and the outputs come in order.
pub(crate) fn a_crash_in_a_fresh_process_map_fails_that_task_alone(b: PoolBuilder) {
    crash_in_a_recycling_map(b, 1);
}

/// The same with four tasks per worker: a new worker's early task is split off the
/// front of a batch of several, whose rest waits for the worker's journal.
pub(crate) fn a_crash_in_a_recycling_map_fails_that_task_alone(b: PoolBuilder) {
    crash_in_a_recycling_map(b, 4);
}

fn crash_in_a_recycling_map(b: PoolBuilder, per_worker: u64) {
    let pool = b
        .workers(2)
        .max_tasks_per_worker(per_worker)
        .core_dumps(false)
        .build()
        .unwrap();
    let log = std::env::temp_dir().join(format!(
        "procpool-recycling-tally-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&log);
    let (tasks, crash_at) = (120, 45);
    let inputs = (0..tasks).map(|n| Tally {
        log: log.clone(),
        n,
        pad: 0,
        crash: n == crash_at,
        sleep_ms: 0,
    });
    let outs: Vec<_> = pool.map(inputs).collect();
    let runs = read_tally(&log);
    let _ = std::fs::remove_file(&log);
    assert_eq!(outs.len() as u64, tasks);
    let mut per_pid = std::collections::HashMap::new();
    for (n, out) in (0..).zip(&outs) {
        match out {
            Err(e) if n == crash_at => assert_eq!(e.signal(), Some(11), "{e:?}"),
            Ok((m, pid, _)) if n != crash_at => {
                assert_eq!(*m, n);
                *per_pid.entry(*pid).or_insert(0) += 1;
            }
            other => panic!("task {n}: {other:?}"),
        }
        assert_eq!(runs.get(&n).map(|r| r.0), Some(1), "task {n} runs");
    }
    assert!(per_pid.values().all(|&k| k <= per_worker), "{per_pid:?}");
}

pub(crate) fn panic_is_reported_with_message_and_location(b: PoolBuilder) {
    let e = fault_then_healthy(b, Fault::Panic("bad input 7".into()));
    let TaskError::Panicked { message, location } = &e else {
        panic!("expected a panic, got {e:?}");
    };
    assert_eq!(message, "bad input 7");
    assert!(
        location.as_deref().unwrap_or("").contains("lib.rs"),
        "{location:?}"
    );
    assert!(e.is_panic());
}

pub(crate) fn failure_keeps_its_cause_chain(b: PoolBuilder) {
    let e = fault_then_healthy(b, Fault::Fail);
    assert_eq!(
        e,
        TaskError::Failed {
            chain: vec![
                "could not parse the input".into(),
                "input.bin missing".into()
            ]
        }
    );
}

pub(crate) fn segfault_names_the_signal(b: PoolBuilder) {
    let e = fault_then_healthy(b.core_dumps(false), Fault::Segfault);
    assert!(e.is_signal() && e.is_crash(), "{e:?}");
    assert_eq!(e.signal(), Some(11));
    assert!(e.to_string().contains("SIGSEGV"), "{e}");
}

pub(crate) fn abort_names_the_signal(b: PoolBuilder) {
    let e = fault_then_healthy(b.core_dumps(false), Fault::Abort);
    assert_eq!(e.signal(), Some(6), "{e:?}");
    assert!(e.to_string().contains("SIGABRT"));
}

pub(crate) fn exit_zero_mid_task_is_an_error(b: PoolBuilder) {
    let e = fault_then_healthy(b, Fault::Exit(0));
    assert_eq!(e.exit_code(), Some(0), "{e:?}");
}

pub(crate) fn exit_three_mid_task_is_an_error(b: PoolBuilder) {
    let e = fault_then_healthy(b, Fault::Exit(3));
    assert_eq!(e.exit_code(), Some(3), "{e:?}");
    assert!(e.is_exit());
}

pub(crate) fn stack_overflow_is_a_crash_with_the_runtime_message(b: PoolBuilder) {
    let e = fault_then_healthy(b.core_dumps(false), Fault::StackOverflow);
    assert!(e.is_signal(), "{e:?}");
    assert!(
        e.stderr_tail()
            .iter()
            .any(|l| l.contains("overflowed its stack")),
        "{:?}",
        e.stderr_tail()
    );
}

pub(crate) fn worker_killed_from_outside(b: PoolBuilder) {
    let pool = b.workers(1).build().unwrap();
    let pid = pool.submit(WorkerPid).unwrap().wait().unwrap();
    let sleeper = pool.submit(Fault::Sleep(60_000)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let e = sleeper.wait().unwrap_err();
    assert_eq!(e.signal(), Some(9), "{e:?}");
    assert_eq!(pool.submit(Square(3)).unwrap().wait(), Ok(9));
}

/// SIGKILLs `pid` from outside the pool.
fn kill_from_outside(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
}

/// Two workers die while idle, killed from outside: the tasks submitted after that
/// never ran on them and owe them nothing. Each succeeds, with no retry to spare.
pub(crate) fn idle_workers_killed_from_outside_cost_no_task(b: PoolBuilder) {
    let pool = b.workers(2).retries(0).build().unwrap();
    // Two tasks that overlap, so that both workers are warm.
    let warm: Vec<_> = (0..2)
        .map(|_| pool.submit(PidAfter(300)).unwrap())
        .collect();
    let pids: Vec<u32> = warm.into_iter().map(|h| h.wait().unwrap()).collect();
    assert_ne!(pids[0], pids[1], "both tasks ran on one worker");
    for &pid in &pids {
        kill_from_outside(pid);
    }
    std::thread::sleep(Duration::from_millis(200));
    let handles: Vec<_> = (0..6).map(|n| pool.submit(Square(n)).unwrap()).collect();
    for (n, handle) in (0..).zip(handles) {
        assert_eq!(handle.wait(), Ok(n * n), "task {n}");
    }
    let after = pool.submit(WorkerPid).unwrap().wait().unwrap();
    assert!(!pids.contains(&after));
}

/// The fork server dies, SIGKILLed, and its idle workers with it: a task submitted
/// afterwards is not blamed for their deaths. (For the fork-server launch modes.)
pub(crate) fn a_killed_fork_server_s_idle_workers_cost_no_task(b: PoolBuilder) {
    let pool = b.workers(1).retries(0).core_dumps(false).build().unwrap();
    let me = std::process::id();
    // The first worker may have been forked from this program: a crash has it replaced
    // by one forked from the server.
    let mut server = pool.submit(ParentPid).unwrap().wait().unwrap();
    if server == me {
        assert!(pool.submit(Fault::Segfault).unwrap().wait().is_err());
        server = pool.submit(ParentPid).unwrap().wait().unwrap();
    }
    assert_ne!(server, me, "no worker was forked by a fork server");
    kill_from_outside(server);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pool.submit(Square(7)).unwrap().wait(), Ok(49));
    let new_server = pool.submit(ParentPid).unwrap().wait().unwrap();
    assert_ne!(new_server, server);
}

/// A panic in a task's `Serialize` reaches the caller of `submit` or `try_submit`, and
/// the in-flight place it took is free again: later submits are not refused, nor kept
/// waiting.
pub(crate) fn a_panic_in_a_task_s_serialize_gives_its_place_back(b: PoolBuilder) {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let pool = b.max_in_flight(1).build().unwrap();
    for attempt in 0..3 {
        match catch_unwind(AssertUnwindSafe(|| pool.try_submit(PanicsOnEncode))) {
            Err(_) => {}
            Ok(Err(refused)) => panic!("attempt {attempt} refused: {refused} (a place was kept)"),
            Ok(Ok(_)) => panic!("the panic did not reach the caller"),
        }
    }
    assert_eq!(pool.try_submit(Square(4)).unwrap().wait(), Ok(16));
    let submitted = catch_unwind(AssertUnwindSafe(|| pool.submit(PanicsOnEncode)));
    assert!(submitted.is_err(), "the panic did not reach the caller");
    assert_eq!(pool.try_submit(Square(5)).unwrap().wait(), Ok(25));
    assert_eq!(pool.submit(Square(6)).unwrap().wait(), Ok(36));
}

/// A generic task has one `NAME` for every `T`: each registered instantiation runs as
/// itself, and one that was not registered is refused with both types named, never
/// decoded as another (with only `Double<u32>` under the name, `Double<i32>(-3)` came
/// back `Ok(5)`).
pub(crate) fn a_generic_task_runs_only_as_a_registered_instantiation(b: PoolBuilder) {
    let pool = b.build().unwrap();
    assert_eq!(pool.submit(Double(21u32)).unwrap().wait(), Ok(42));
    assert_eq!(pool.submit(Double(1u64 << 40)).unwrap().wait(), Ok(1 << 41));
    let refused = |e: &TaskError, submitted: &str| {
        // Refused by the parent when its workers run this program, else by the worker.
        matches!(e, TaskError::WrongTypes { name, submitted: s, registered, .. }
            if name == "procpool_worker::Double"
                && s.contains(submitted)
                && registered.iter().any(|r| r.contains("Double<u32>")))
    };
    let e = pool.submit(Double(-3i32)).unwrap().wait().unwrap_err();
    assert!(refused(&e, "Double<i32>"), "{e:?}");
    assert!(e.to_string().contains("Double<i32> -> i32"), "{e}");
    let e = pool.submit(Double(1.5f64)).unwrap().wait().unwrap_err();
    assert!(refused(&e, "Double<f64>"), "{e:?}");
    let outs: Vec<_> = pool.map([Double(-3i32), Double(4)]).collect();
    assert_eq!(outs.len(), 2);
    for out in outs {
        assert!(refused(out.as_ref().unwrap_err(), "Double<i32>"), "{out:?}");
    }
    let outs: Vec<_> = pool.map((0..100u32).map(Double)).collect();
    assert_eq!(outs, (0..100u32).map(|n| Ok(2 * n)).collect::<Vec<_>>());
}

pub(crate) fn endless_loop_times_out(b: PoolBuilder) {
    let started = Instant::now();
    let e = fault_then_healthy(b.timeout(Duration::from_millis(300)), Fault::Hang);
    assert!(e.is_timeout(), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// Quick tasks before the hung one in [`hung_map_inputs`]: enough that the map has
/// learnt how quick they are and sends them in batches of hundreds (about 1 ms of work
/// each), so the hung task lands in the middle of a batch, behind quick tasks of its own
/// batch.
const BEFORE_HANG: usize = 600;
/// Quick tasks after the hung one.
const AFTER_HANG: usize = 2_000;
/// The hung task's timeout.
const HANG_TIMEOUT: Duration = Duration::from_secs(3);
/// How long before the hung task timed out its quick neighbours must have finished (or
/// reached the caller). They take milliseconds, so this leaves seconds of room on a
/// loaded machine, while a task held back until the timeout cannot pass.
const HANG_MARGIN: Duration = Duration::from_secs(1);

/// Slow tasks (60 ms) among quick ones in a map: each slow one is cut from its batch
/// once it has run 20 ms, and what follows it goes to the other worker. Every task
/// still runs exactly once and succeeds, whether the worker's timed partial answer
/// falls at the cut or not.
pub(crate) fn slow_tasks_in_a_map_run_once_each(b: PoolBuilder) {
    let pool = b.workers(2).build().unwrap();
    let log = std::env::temp_dir().join(format!(
        "procpool-slow-tally-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&log);
    let tasks = 20_000;
    let inputs = (0..tasks).map(|n| Tally {
        log: log.clone(),
        n,
        pad: 0,
        crash: false,
        sleep_ms: if n % 2_000 == 1_000 { 60 } else { 0 },
    });
    let outs: Vec<_> = pool.map(inputs).collect();
    let runs = read_tally(&log);
    let _ = std::fs::remove_file(&log);
    assert_eq!(outs.len() as u64, tasks);
    let wrong: Vec<_> = (0..tasks)
        .zip(&outs)
        .filter(|(n, out)| !matches!(out, Ok((m, _, _)) if m == n))
        .map(|(n, out)| format!("{n}: {out:?}"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");
    let not_once: Vec<_> = (0..tasks)
        .filter(|n| runs.get(n).map(|r| r.0) != Some(1))
        .map(|n| (n, runs.get(&n).map(|r| r.0)))
        .collect();
    assert!(
        not_once.is_empty(),
        "tasks not run exactly once: {not_once:?}"
    );
}

/// A map's inputs: quick tasks that return when they finished, one endless loop at
/// `BEFORE_HANG`, then more quick tasks.
fn hung_map_inputs() -> impl Iterator<Item = Fault> {
    (0..BEFORE_HANG + 1 + AFTER_HANG).map(|n| {
        if n == BEFORE_HANG {
            Fault::Hang
        } else {
            Fault::Now
        }
    })
}

/// A map's outcome, with when it reached the caller.
type Arrival = (usize, Result<u64, TaskError>, SystemTime);

/// A hung task holds its own worker, not the map: with 2 workers, the other one runs
/// every quick task after it (and any queued behind it is taken back), all finished
/// long before it times out; the quick tasks before it, its batch's among them, reach
/// the caller long before then too. Exactly one outcome per input.
pub(crate) fn a_hung_task_holds_only_its_own_worker_in_a_map(b: PoolBuilder) {
    let pool = b.workers(2).timeout(HANG_TIMEOUT).build().unwrap();
    let arrivals = (0..)
        .zip(pool.map(hung_map_inputs()))
        .map(|(index, outcome)| (index, outcome, SystemTime::now()))
        .collect();
    check_hung_map(arrivals, false);
}

/// The same through `map_unordered`, where every quick outcome, the ones after the hung
/// task too, reaches the caller long before the hung task's `TimedOut`.
pub(crate) fn a_hung_task_holds_only_its_own_worker_in_an_unordered_map(b: PoolBuilder) {
    let pool = b.workers(2).timeout(HANG_TIMEOUT).build().unwrap();
    let arrivals = pool
        .map_unordered(hung_map_inputs())
        .map(|(index, outcome)| (index, outcome, SystemTime::now()))
        .collect();
    check_hung_map(arrivals, true);
}

/// Checks the outcomes of `hung_map_inputs` in the order they arrived: every quick task
/// finished at least `HANG_MARGIN` before the hung one's `TimedOut` reached the caller,
/// and those before it (or, `unordered`, all of them) reached the caller by then too.
fn check_hung_map(arrivals: Vec<Arrival>, unordered: bool) {
    let total = BEFORE_HANG + 1 + AFTER_HANG;
    let mut seen = vec![0; total];
    for (index, _, _) in &arrivals {
        seen[*index] += 1;
    }
    let wrong: Vec<_> = (0..total).filter(|&i| seen[i] != 1).collect();
    assert!(
        wrong.is_empty(),
        "inputs without exactly one outcome: {wrong:?}"
    );
    let (_, hung, timed_out) = &arrivals[arrivals.iter().position(|a| a.0 == BEFORE_HANG).unwrap()];
    assert!(hung.as_ref().is_err_and(TaskError::is_timeout), "{hung:?}");
    let deadline = *timed_out - HANG_MARGIN;
    let mut late_finish = Vec::new();
    let mut late_arrival = Vec::new();
    for (index, outcome, arrived) in arrivals.iter().filter(|a| a.0 != BEFORE_HANG) {
        let finished = *outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("task {index}: {e:?}"));
        if finished > micros_since_epoch(deadline) {
            late_finish.push(*index);
        }
        if (unordered || *index < BEFORE_HANG) && *arrived > deadline {
            late_arrival.push(*index);
        }
    }
    assert!(
        late_finish.is_empty() && late_arrival.is_empty(),
        "of the quick tasks, {} finished and {} reached the caller less than {HANG_MARGIN:?} \
         before the hung task's TimedOut did: {} and {}",
        late_finish.len(),
        late_arrival.len(),
        spans(&late_finish),
        spans(&late_arrival),
    );
}

/// Indices as runs, `3..=7, 12`, for a failure message.
fn spans(indices: &[usize]) -> String {
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for i in sorted {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => runs.push((i, i)),
        }
    }
    let runs: Vec<String> = runs
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}..={b}")
            }
        })
        .collect();
    format!("[{}]", runs.join(", "))
}

pub(crate) fn loop_ignoring_sigterm_is_killed_after_the_grace(b: PoolBuilder) {
    let b = b
        .timeout(Duration::from_millis(300))
        .kill_grace(Duration::from_millis(200));
    let e = fault_then_healthy(b, Fault::HangIgnoringTerm);
    assert!(e.is_timeout(), "{e:?}");
}

pub(crate) fn allocation_bomb_hits_the_memory_limit(b: PoolBuilder) {
    let e = fault_then_healthy(b.max_memory(256 << 20), Fault::AllocBomb(4096));
    assert!(e.is_memory_limit(), "{e:?}");
}

pub(crate) fn ten_megabytes_of_stdout_corrupt_nothing(b: PoolBuilder) {
    let n = 10 << 20;
    assert_eq!(
        one(b.stdout(OutputMode::Null), Fault::PrintStdout(n)),
        Ok(n)
    );
}

pub(crate) fn ten_megabytes_of_stderr_corrupt_nothing(b: PoolBuilder) {
    let n = 10 << 20;
    assert_eq!(
        one(b.stderr(OutputMode::Null), Fault::PrintStderr(n)),
        Ok(n)
    );
}

pub(crate) fn hundred_megabyte_argument_and_result(b: PoolBuilder) {
    let input: Vec<u8> = (0..100usize << 20).map(|i| (i % 251) as u8).collect();
    let mut expected = input.clone();
    expected.reverse();
    let out = one(b, Reverse(input)).unwrap();
    assert!(
        out.as_slice() == expected.as_slice(),
        "100 MB came back different"
    );
}

pub(crate) fn unknown_task_is_named(b: PoolBuilder) {
    let e = one(b, Unregistered).unwrap_err();
    let TaskError::UnknownTask { name, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(name, "procpool_worker::Unregistered");
}

pub(crate) fn task_that_fails_to_decode_in_the_worker(b: PoolBuilder) {
    let e = one(b, Undecodable).unwrap_err();
    assert!(
        matches!(
            e,
            TaskError::Codec {
                side: Side::Worker,
                direction: Direction::ToWorker,
                ..
            }
        ),
        "{e:?}"
    );
}

/// A panic in a task's `Deserialize`, in the worker, is a codec error of that task
/// alone: the same worker runs the next one.
pub(crate) fn a_panic_while_decoding_the_input_is_a_codec_error(b: PoolBuilder) {
    let pool = b.workers(1).build().unwrap();
    let before = pool.submit(WorkerPid).unwrap().wait().unwrap();
    let e = pool.submit(PanicsOnDecode).unwrap().wait().unwrap_err();
    assert!(
        matches!(&e, TaskError::Codec { side: Side::Worker, direction: Direction::ToWorker, message }
            if message.contains("panicked while decoding") && message.contains("refuses to decode")),
        "{e:?}"
    );
    assert_eq!(pool.submit(WorkerPid).unwrap().wait(), Ok(before));
}

/// A panic in the `Drop` of a task's output, in the worker, is that task's panic: the
/// same worker runs the next one.
pub(crate) fn a_panic_while_dropping_the_output_is_a_panic(b: PoolBuilder) {
    let pool = b.workers(1).build().unwrap();
    let before = pool.submit(WorkerPid).unwrap().wait().unwrap();
    let e = pool
        .submit(BadOutput::PanicOnDrop)
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(&e, TaskError::Panicked { message, .. }
            if message.contains("while dropping the output") && message.contains("refuses to be dropped")),
        "{e:?}"
    );
    assert_eq!(pool.submit(WorkerPid).unwrap().wait(), Ok(before));
}

/// A panic in the `Display` of the error a task returned, in the worker, is that
/// task's panic, and so is one in its `Drop` after that (which, were the error dropped
/// while the first panic unwound, would abort the worker): the same worker runs the
/// next task.
pub(crate) fn a_panic_while_describing_the_error_is_a_panic(b: PoolBuilder) {
    same_worker_after(
        b,
        PanickyError,
        |e| matches!(e, TaskError::Panicked { message, .. } if message.contains("refuses to be printed")),
    );
}

/// A panic in an output's `Serialize`, then in its `Drop`, is a codec error of that
/// task alone.
pub(crate) fn a_panic_while_encoding_then_dropping_is_a_codec_error(b: PoolBuilder) {
    same_worker_after(b, BadOutput::PanicOnEncodeAndDrop, |e| {
        matches!(e, TaskError::Codec { side: Side::Worker, direction: Direction::ToParent, message }
            if message.contains("panicked while encoding"))
    });
}

/// A panic whose payload panics when dropped (`panic_any`) is still that task's panic.
pub(crate) fn a_panic_payload_that_panics_when_dropped_is_a_panic(b: PoolBuilder) {
    same_worker_after(b, PanicsWithBadPayload, |e| e.is_panic());
}

/// Panics in the `Deserialize` of a map's inputs, which run in batches: each is that
/// input's codec error, and the same worker runs the next task.
pub(crate) fn panics_while_decoding_map_inputs_are_codec_errors(b: PoolBuilder) {
    let pool = b.workers(1).build().unwrap();
    let before = pool.submit(WorkerPid).unwrap().wait().unwrap();
    let outs: Vec<_> = pool.map((0..5).map(|_| PanicsOnDecode)).collect();
    assert_eq!(outs.len(), 5);
    for out in outs {
        let e = out.unwrap_err();
        assert!(
            matches!(&e, TaskError::Codec { side: Side::Worker, direction: Direction::ToWorker, message }
                if message.contains("panicked while decoding")),
            "{e:?}"
        );
    }
    assert_eq!(pool.submit(WorkerPid).unwrap().wait(), Ok(before));
}

/// Runs `task` on a one-worker pool between two `WorkerPid`s: its error must pass
/// `expected`, and the same worker must run the task after it.
fn same_worker_after<T: procpool::Task>(
    b: PoolBuilder,
    task: T,
    expected: impl Fn(&TaskError) -> bool,
) {
    let pool = b.workers(1).build().unwrap();
    let before = pool.submit(WorkerPid).unwrap().wait().unwrap();
    let e = match pool.submit(task).unwrap().wait() {
        Ok(_) => panic!("the task succeeded"),
        Err(e) => e,
    };
    assert!(expected(&e), "{e:?}");
    assert_eq!(pool.submit(WorkerPid).unwrap().wait(), Ok(before));
}

pub(crate) fn panic_while_encoding_the_output(b: PoolBuilder) {
    let e = one(b, BadOutput::PanicOnEncode).unwrap_err();
    assert!(
        matches!(&e, TaskError::Codec { side: Side::Worker, direction: Direction::ToParent, message } if message.contains("refuses to encode")),
        "{e:?}"
    );
}

pub(crate) fn output_that_fails_to_decode_in_the_parent(b: PoolBuilder) {
    let e = one(b, BadOutput::FailOnDecode).unwrap_err();
    assert!(
        matches!(
            e,
            TaskError::Codec {
                side: Side::Parent,
                direction: Direction::ToParent,
                ..
            }
        ),
        "{e:?}"
    );
}

pub(crate) fn captured_output_arrives_line_by_line(b: PoolBuilder) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (out, err) = (lines.clone(), lines.clone());
    let pool = b
        .workers(1)
        .stdout(OutputMode::capture(move |l| out.lock().unwrap().push(l)))
        .stderr(OutputMode::capture(move |l| err.lock().unwrap().push(l)))
        .build()
        .unwrap();
    let worker = pool.submit(WorkerPid).unwrap().wait().unwrap();
    assert_eq!(
        pool.submit(Fault::PrintStdout(1000)).unwrap().wait(),
        Ok(1000)
    );
    assert_eq!(
        pool.submit(Fault::PrintStderr(500)).unwrap().wait(),
        Ok(500)
    );
    pool.shutdown();
    // Every line is delivered by the time join returns.
    pool.join();
    let lines = lines.lock().unwrap();
    // Fault::Print* writes lines of 99 'x'. (A worker re-executed from a test binary
    // also prints libtest's header on stdout.)
    let count = |stream| {
        lines
            .iter()
            .filter(|l| l.stream == stream && l.worker == worker && l.text == "x".repeat(99))
            .count()
    };
    assert_eq!(count(OutputStream::Stdout), 10, "{lines:?}");
    assert_eq!(count(OutputStream::Stderr), 5, "{lines:?}");
    // Each line names the task that wrote it (one task type ran since the first).
    assert!(
        lines
            .iter()
            .filter(|l| l.worker == worker && l.text == "x".repeat(99))
            .all(|l| l.task == Some("procpool_worker::Fault")),
        "{lines:?}"
    );
}

/// What a task wrote to the C library's buffered stdout, without a flush, reaches
/// the pool when its worker ends (recycled after that one task).
pub(crate) fn c_stdio_output_is_flushed_when_a_worker_ends(b: PoolBuilder) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = lines.clone();
    let pool = b
        .workers(1)
        .max_tasks_per_worker(1)
        .stdout(OutputMode::capture(move |l| out.lock().unwrap().push(l)))
        .build()
        .unwrap();
    let text = "written with printf, never flushed";
    let task = CStdioPrint(text.into());
    assert_eq!(pool.submit(task).unwrap().wait(), Ok(text.len() as u64));
    pool.shutdown();
    pool.join();
    let lines = lines.lock().unwrap();
    assert!(lines.iter().any(|l| l.text == text), "{lines:?}");
}

pub(crate) fn submit_after_shutdown_hands_the_task_back(b: PoolBuilder) {
    let pool = b.build().unwrap();
    pool.shutdown();
    let refused = pool.submit(Square(5)).unwrap_err();
    assert!(refused.is_closed());
    assert_eq!(refused.into_inner().0, 5);
}

/// Every launch mode runs every function above; the list keeps the files in step.
///
/// `fault_matrix!(builder_expr)` defines one `#[test]` per fault; `fault_matrix!(list)`
/// gives `(name, function)` pairs for a test binary with its own harness.
#[macro_export]
macro_rules! fault_matrix {
    (@names $how:ident [$($arg:tt)*]) => {
        $crate::fault_matrix! {@$how [$($arg)*]
            squares_in_order,
            a_crash_mid_batch_fails_that_task_alone,
            a_crash_mid_batch_after_a_partial_answer,
            a_map_s_tasks_share_an_array_across_workers,
            a_crash_in_a_fresh_process_map_fails_that_task_alone,
            a_crash_in_a_recycling_map_fails_that_task_alone,
            panic_is_reported_with_message_and_location,
            failure_keeps_its_cause_chain,
            segfault_names_the_signal,
            abort_names_the_signal,
            exit_zero_mid_task_is_an_error,
            exit_three_mid_task_is_an_error,
            stack_overflow_is_a_crash_with_the_runtime_message,
            worker_killed_from_outside,
            idle_workers_killed_from_outside_cost_no_task,
            a_panic_in_a_task_s_serialize_gives_its_place_back,
            a_generic_task_runs_only_as_a_registered_instantiation,
            endless_loop_times_out,
            a_hung_task_holds_only_its_own_worker_in_a_map,
            a_hung_task_holds_only_its_own_worker_in_an_unordered_map,
            slow_tasks_in_a_map_run_once_each,
            loop_ignoring_sigterm_is_killed_after_the_grace,
            allocation_bomb_hits_the_memory_limit,
            ten_megabytes_of_stdout_corrupt_nothing,
            ten_megabytes_of_stderr_corrupt_nothing,
            hundred_megabyte_argument_and_result,
            unknown_task_is_named,
            task_that_fails_to_decode_in_the_worker,
            panic_while_encoding_the_output,
            a_panic_while_decoding_the_input_is_a_codec_error,
            a_panic_while_dropping_the_output_is_a_panic,
            a_panic_while_describing_the_error_is_a_panic,
            a_panic_while_encoding_then_dropping_is_a_codec_error,
            a_panic_payload_that_panics_when_dropped_is_a_panic,
            panics_while_decoding_map_inputs_are_codec_errors,
            output_that_fails_to_decode_in_the_parent,
            submit_after_shutdown_hands_the_task_back,
            captured_output_arrives_line_by_line,
            c_stdio_output_is_flushed_when_a_worker_ends,
            task_functions_run_through_call_and_map_fn,
            task_function_faults_are_typed,
            a_task_function_s_own_timeout_is_the_one_that_counts,
            a_task_function_s_own_retries_are_the_ones_that_count,
        }
    };
    (@tests [$builder:expr] $($name:ident),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::common::matrix::$name($builder);
            }
        )+
    };
    (@list [] $($name:ident),+ $(,)?) => {
        [$((stringify!($name), $crate::common::matrix::$name as fn(procpool::PoolBuilder))),+]
    };
    (list) => {
        $crate::fault_matrix!(@names list [])
    };
    ($builder:expr) => {
        $crate::fault_matrix!(@names tests [$builder]);
    };
}
