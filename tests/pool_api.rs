//! The pool's API with real worker processes: handles, cancellation, retries, recycling,
//! context, environment, maps, backpressure, start-up failures, options per task and
//! waiting on several handles.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use procpool::{Launch, Pool, PoolBuilder, TaskError, TaskHandle, TaskOptions};
use procpool_worker::{
    read_tally, CrashOnce, Fault, Reverse, Square, SumContext, Tally, Touch, WorkerEnv, WorkerPid,
};

procpool::test_support!();

fn builder() -> PoolBuilder {
    procpool_worker::link();
    Pool::builder().workers(2)
}

#[test]
fn cancel_a_queued_task() {
    let pool = builder().workers(1).build().unwrap();
    let busy = pool.submit(Fault::Sleep(300)).unwrap();
    let queued = pool.submit(Square(2)).unwrap();
    assert!(queued.cancel());
    assert_eq!(queued.wait(), Err(TaskError::Cancelled));
    assert_eq!(busy.wait(), Ok(300));
}

#[test]
fn cancel_a_running_task_kills_and_replaces_its_worker() {
    let pool = builder().workers(1).build().unwrap();
    let before = pool.submit(WorkerPid).unwrap().wait().unwrap();
    let hang = pool.submit(Fault::Hang).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(!hang.is_finished());
    let started = Instant::now();
    assert!(hang.cancel());
    assert_eq!(hang.wait(), Err(TaskError::Cancelled));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(common::eventually(Duration::from_secs(5), || {
        !common::is_running(before)
    }));
    let after = pool.submit(WorkerPid).unwrap().wait().unwrap();
    assert_ne!(before, after, "the cancelled task's worker was replaced");
}

#[test]
fn cancel_after_the_outcome_changes_nothing() {
    let pool = builder().build().unwrap();
    let h = pool.submit(Square(4)).unwrap();
    while !h.is_finished() {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!h.cancel());
    assert_eq!(h.wait(), Ok(16));
}

#[test]
fn wait_timeout_hands_the_handle_back() {
    let pool = builder().build().unwrap();
    let h = pool.submit(Fault::Sleep(400)).unwrap();
    let h = h.wait_timeout(Duration::from_millis(5)).unwrap_err();
    assert_eq!(h.wait_timeout(Duration::from_secs(30)).unwrap(), Ok(400));
}

#[test]
fn a_retry_cures_a_one_off_crash() {
    let dir = std::env::temp_dir().join(format!("procpool-retry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("crashed-once");
    let _ = std::fs::remove_file(&marker);
    let pool = builder().retries(1).core_dumps(false).build().unwrap();
    assert_eq!(
        pool.submit(CrashOnce(marker.clone())).unwrap().wait(),
        Ok(1)
    );
    assert!(marker.exists(), "the first attempt ran and crashed");

    let marker2 = dir.join("crashed-without-retry");
    let _ = std::fs::remove_file(&marker2);
    let pool = builder().core_dumps(false).build().unwrap();
    let e = pool.submit(CrashOnce(marker2)).unwrap().wait().unwrap_err();
    assert_eq!(e.signal(), Some(6), "{e:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn retries_do_not_repeat_a_panic() {
    let pool = builder().retries(3).build().unwrap();
    let e = pool.submit(Fault::Panic("once".into())).unwrap().wait();
    assert!(e.unwrap_err().is_panic());
}

#[test]
fn max_tasks_per_worker_one_gives_a_fresh_process_per_task() {
    let pool = builder()
        .workers(1)
        .max_tasks_per_worker(1)
        .build()
        .unwrap();
    let pids: HashSet<u32> = (0..5)
        .map(|_| pool.submit(WorkerPid).unwrap().wait().unwrap())
        .collect();
    assert_eq!(pids.len(), 5);
}

#[test]
fn context_is_sent_once_and_read_in_tasks() {
    let data: Vec<u64> = (0..1000).collect();
    let pool = builder().context(&data).build().unwrap();
    let sums: Vec<u64> = pool
        .map((0..8).map(|_| SumContext))
        .map(Result::unwrap)
        .collect();
    assert_eq!(sums, vec![499_500; 8]);
}

#[test]
fn a_task_reading_a_missing_context_fails_cleanly() {
    let pool = builder().build().unwrap();
    let e = pool.submit(SumContext).unwrap().wait().unwrap_err();
    assert!(e.is_failed() && e.to_string().contains("no context"), "{e}");
}

#[test]
fn env_and_current_dir_reach_the_worker() {
    let pool = builder()
        .env("PROCPOOL_TEST_VALUE", "forty-two")
        .current_dir("/")
        .build()
        .unwrap();
    let (value, cwd) = pool
        .submit(WorkerEnv("PROCPOOL_TEST_VALUE".into()))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(value.as_deref(), Some("forty-two"));
    assert_eq!(cwd, "/");
}

#[test]
fn map_unordered_gives_every_index_exactly_once() {
    let pool = builder().build().unwrap();
    let mut seen = vec![false; 500];
    for (i, out) in pool.map_unordered((0..500).map(Square)) {
        assert!(!seen[i], "index {i} twice");
        seen[i] = true;
        assert_eq!(out, Ok((i * i) as u64));
    }
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn map_pulls_its_input_lazily() {
    let pool = builder().build().unwrap();
    // The map keeps 4 batches per worker in flight, each of at most 65,536 tasks
    // (README); the 32-task floor is far below that.
    let window = 4 * 65_536 * pool.workers();
    let pulled = AtomicUsize::new(0);
    let endless = (0u64..).map(|n| {
        pulled.fetch_add(1, Ordering::SeqCst);
        Square(n)
    });
    let first: Vec<u64> = pool.map(endless).take(50).map(Result::unwrap).collect();
    assert_eq!(first[49], 49 * 49);
    let pulled = pulled.load(Ordering::SeqCst);
    assert!(
        pulled <= 50 + window,
        "an endless input was pulled {pulled} times for 50 outputs"
    );
}

/// Quick tasks make a slot send tasks ahead of the running one. A task cancelled while
/// it waits in a worker's pipeline is skipped there: it never runs, its outcome is
/// `Cancelled`, and the worker lives on.
#[test]
fn a_task_cancelled_in_a_workers_pipeline_never_runs() {
    let pool = builder().workers(1).build().unwrap();
    let warm: Vec<u64> = pool.map((0..50).map(Square)).map(Result::unwrap).collect();
    assert_eq!(warm.len(), 50);
    let worker = pool.submit(WorkerPid).unwrap().wait().unwrap();
    let marker = std::env::temp_dir().join(format!("procpool-skip-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let running = pool.submit(Fault::Sleep(400)).unwrap();
    let waiting = pool.submit(Touch(marker.clone())).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(waiting.cancel());
    assert_eq!(waiting.wait(), Err(TaskError::Cancelled));
    assert_eq!(running.wait(), Ok(400));
    assert!(!marker.exists(), "the cancelled task ran");
    assert_eq!(pool.submit(WorkerPid).unwrap().wait(), Ok(worker));
}

/// Tasks sent ahead of the running one are timed from when they start, not from when
/// they were sent: three 150 ms tasks sent together all pass a 250 ms timeout.
#[test]
fn pipelined_tasks_are_timed_from_their_own_start() {
    let pool = builder()
        .workers(1)
        .timeout(Duration::from_millis(250))
        .build()
        .unwrap();
    let warm: Vec<u64> = pool.map((0..50).map(Square)).map(Result::unwrap).collect();
    assert_eq!(warm.len(), 50);
    let sleeps: Vec<_> = (0..3)
        .map(|_| pool.submit(Fault::Sleep(150)).unwrap())
        .collect();
    for sleep in sleeps {
        assert_eq!(sleep.wait(), Ok(150));
    }
}

/// A crash fails the running task only: the tasks sent behind it run on the next
/// worker, once each.
#[test]
fn tasks_behind_a_crash_run_on_the_next_worker() {
    let pool = builder().workers(1).core_dumps(false).build().unwrap();
    let warm: Vec<u64> = pool.map((0..50).map(Square)).map(Result::unwrap).collect();
    assert_eq!(warm.len(), 50);
    let crash = pool.submit(Fault::Segfault).unwrap();
    let behind: Vec<_> = (0..20).map(|n| pool.submit(Square(n)).unwrap()).collect();
    assert!(crash.wait().unwrap_err().is_signal());
    for (n, handle) in behind.into_iter().enumerate() {
        assert_eq!(handle.wait(), Ok((n * n) as u64));
    }
}

/// A batch is timed task by task, from the journal's progress: 30 tasks of 40 ms
/// batched behind quick ones (so that one batch takes far longer than the timeout) all
/// pass a 150 ms timeout, and a hang among quick tasks times out alone.
#[test]
fn tasks_in_a_batch_are_timed_one_by_one() {
    let pool = builder()
        .workers(1)
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let inputs = (0..2_000u64).map(|i| match i {
        0..1_970 => Fault::Ok(i),
        _ => Fault::Sleep(40),
    });
    for (i, out) in pool.map(inputs).enumerate() {
        assert_eq!(out, Ok(if i < 1_970 { i as u64 } else { 40 }), "task {i}");
    }
    let inputs = (0..2_000u64).map(|i| match i {
        1_500 => Fault::Hang,
        _ => Fault::Ok(i),
    });
    for (i, out) in pool.map(inputs).enumerate() {
        match out {
            Err(e) if i == 1_500 => assert!(e.is_timeout(), "{e:?}"),
            out => assert_eq!(out, Ok(i as u64), "task {i}"),
        }
    }
}

/// The last task of a batch crashes once and is retried alone, on a fresh worker: the
/// retry runs it and it ends well.
#[test]
fn a_retried_task_from_the_end_of_a_batch_runs_again() {
    let pool = builder().workers(1).retries(1).build().unwrap();
    let dir = std::env::temp_dir().join(format!("procpool-retry-end-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seen = dir.join("seen");
    let fresh = dir.join("fresh");
    std::fs::write(&seen, b"").unwrap();
    let _ = std::fs::remove_file(&fresh);
    let inputs = (0..500).map(|i| {
        CrashOnce(if i == 499 {
            fresh.clone()
        } else {
            seen.clone()
        })
    });
    let outs: Vec<_> = pool.map(inputs).collect();
    let _ = std::fs::remove_dir_all(&dir);
    for (i, out) in outs.iter().enumerate() {
        assert_eq!(out, &Ok(1), "task {i}");
    }
}

/// An ordered map waiting for a slow task keeps the other workers fed: however small
/// the batches (here 20 ms tasks, one per batch), at least 32 tasks per worker are
/// pulled ahead, so the tasks behind a hang run while it waits for its timeout.
#[test]
fn a_hang_does_not_starve_the_other_workers_of_a_map() {
    let pool = builder()
        .workers(2)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let pulled = AtomicUsize::new(0);
    let inputs = (0..61u64).map(|i| {
        pulled.fetch_add(1, Ordering::SeqCst);
        if i == 0 {
            Fault::Hang
        } else {
            Fault::Sleep(20)
        }
    });
    let mut outs = pool.map(inputs);
    let first = outs.next().unwrap().unwrap_err();
    assert!(first.is_timeout(), "{first:?}");
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        61,
        "inputs pulled while the hang waited"
    );
    assert!(outs.all(|out| out == Ok(20)));
}

/// Batches never carry a worker past its task limit.
#[test]
fn map_respects_max_tasks_per_worker() {
    let pool = builder()
        .workers(1)
        .max_tasks_per_worker(3)
        .build()
        .unwrap();
    let pids: Vec<u32> = pool
        .map((0..30).map(|_| WorkerPid))
        .map(Result::unwrap)
        .collect();
    let mut per_pid = std::collections::HashMap::new();
    for pid in &pids {
        *per_pid.entry(pid).or_insert(0) += 1;
    }
    assert!(per_pid.values().all(|&n| n <= 3), "{per_pid:?}");
    assert_eq!(per_pid.len(), 10, "{per_pid:?}");
}

/// Outputs too big for the batch journal come back in parts, and one bigger than the
/// whole journal on its own: every output arrives whole and in order.
#[test]
fn outputs_larger_than_the_batch_journal_arrive_whole() {
    let pool = builder().workers(1).build().unwrap();
    let len = |i: usize| if i % 40 == 39 { 3 << 20 } else { 100 << 10 };
    let inputs = (0..200usize).map(|i| Reverse(vec![i as u8; len(i)]));
    for (i, out) in pool.map(inputs).enumerate() {
        let out = out.unwrap();
        assert_eq!(out.len(), len(i), "task {i}");
        assert!(out.iter().all(|&b| b == i as u8), "task {i}");
    }
}

#[test]
fn map_keeps_going_past_faults() {
    let pool = builder().core_dumps(false).build().unwrap();
    let inputs = (0..40u64).map(|i| {
        if i % 10 == 3 {
            Fault::Segfault
        } else {
            Fault::Ok(i)
        }
    });
    let outs: Vec<_> = pool.map(inputs).collect();
    for (i, out) in outs.iter().enumerate() {
        if i % 10 == 3 {
            assert_eq!(out.as_ref().unwrap_err().signal(), Some(11));
        } else {
            assert_eq!(out, &Ok(i as u64));
        }
    }
}

#[test]
fn try_submit_refuses_at_the_in_flight_limit_and_hands_the_task_back() {
    let pool = builder().max_in_flight(1).build().unwrap();
    let busy = pool.submit(Fault::Sleep(300)).unwrap();
    let refused = pool.try_submit(Square(9)).unwrap_err();
    assert!(refused.is_full());
    assert_eq!(refused.into_inner().0, 9);
    assert_eq!(busy.wait(), Ok(300));
    assert_eq!(pool.try_submit(Square(9)).unwrap().wait(), Ok(81));
}

#[test]
fn join_finishes_queued_tasks() {
    let pool = builder().build().unwrap();
    let handles: Vec<_> = (0..20).map(|i| pool.submit(Square(i)).unwrap()).collect();
    pool.join();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.wait(), Ok((i * i) as u64));
    }
}

#[test]
fn terminate_ends_running_and_queued_tasks_with_pool_closed() {
    let pool = builder().build().unwrap();
    let handles: Vec<_> = (0..6).map(|_| pool.submit(Fault::Hang).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    pool.terminate();
    assert!(started.elapsed() < Duration::from_secs(10));
    for h in handles {
        assert_eq!(h.wait(), Err(TaskError::PoolClosed));
    }
}

#[test]
fn a_worker_that_cannot_start_fails_tasks_then_refuses_them() {
    let pool = builder()
        .launch(Launch::Binary("/bin/false".into()))
        .max_start_failures(2)
        .build()
        .unwrap();
    let e = pool.submit(Square(1)).unwrap().wait().unwrap_err();
    assert!(e.is_worker_start(), "{e:?}");
    assert!(e.to_string().contains("exited with code 1"), "{e}");
    assert!(common::eventually(Duration::from_secs(10), || pool
        .submit(Square(1))
        .is_err_and(|refused| refused.is_broken())));
}

#[test]
fn a_worker_that_never_answers_hits_the_start_deadline() {
    let script = common::script("silent-worker", "exec sleep 30\n");
    let pool = builder()
        .workers(1)
        .launch(Launch::Binary(script))
        .start_timeout(Duration::from_millis(300))
        .max_start_failures(1)
        .build()
        .unwrap();
    let started = Instant::now();
    let e = pool.submit(Square(1)).unwrap().wait().unwrap_err();
    assert!(e.to_string().contains("was not ready within"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn bad_settings_are_refused_at_build() {
    assert!(builder().workers(0).build().is_err());
    assert!(builder().max_in_flight(0).build().is_err());
    assert!(builder().timeout(Duration::ZERO).build().is_err());
    assert!(builder().start_timeout(Duration::ZERO).build().is_err());
    // Too long to make a deadline of: refused, not a slot that dies at the first start.
    for long in [Duration::MAX, Duration::from_secs(25 * 3600)] {
        let start = builder().start_timeout(long).build().unwrap_err();
        assert!(
            start
                .to_string()
                .contains("start_timeout must be at most 24 hours"),
            "{start}"
        );
        let grace = builder().kill_grace(long).build().unwrap_err();
        assert!(
            grace
                .to_string()
                .contains("kill_grace must be at most 24 hours"),
            "{grace}"
        );
    }
    assert!(builder()
        .start_timeout(Duration::from_secs(24 * 3600))
        .build()
        .is_ok());
    let tiny = builder().max_memory(1).build().unwrap_err();
    assert!(tiny.to_string().contains("at least 16 MiB"), "{tiny}");
    let missing = builder()
        .launch(Launch::Binary("/nonexistent/worker".into()))
        .build();
    assert!(missing.unwrap_err().to_string().contains("does not exist"));
}

/// The smallest memory limit accepted leaves a worker room to run ordinary tasks.
#[test]
fn the_smallest_memory_limit_still_runs_tasks() {
    let pool = builder().max_memory(16 << 20).build().unwrap();
    let out: Vec<u64> = pool.map((0..200).map(Square)).map(Result::unwrap).collect();
    assert_eq!(out[199], 199 * 199);
}

#[test]
fn a_start_failure_quotes_the_first_thing_the_worker_said() {
    let script = common::script(
        "noisy-worker",
        "echo 'cannot open /etc/worker.conf' >&2\n\
         for i in $(seq 1 50); do echo \"  $i: backtrace frame\" >&2; done\nexit 1\n",
    );
    let pool = builder()
        .workers(1)
        .launch(Launch::Binary(script))
        .stderr(procpool::OutputMode::Null)
        .max_start_failures(1)
        .build()
        .unwrap();
    let e = pool.submit(Square(1)).unwrap().wait().unwrap_err();
    assert!(
        e.to_string()
            .contains("first stderr line: cannot open /etc/worker.conf"),
        "{e}"
    );
}

/// libtest runs this test on a thread, so a fork server re-executed from this binary
/// finds itself multi-threaded: it must refuse to fork and say why.
#[test]
fn a_fork_server_in_a_test_harness_refuses_to_fork() {
    let pool = builder()
        .workers(1)
        .launch(Launch::ForkServer)
        .stderr(procpool::OutputMode::Null)
        .max_start_failures(1)
        .build()
        .unwrap();
    let e = pool.submit(Square(1)).unwrap().wait().unwrap_err();
    assert!(e.is_worker_start(), "{e:?}");
    let message = e.to_string();
    assert!(message.contains("threads"), "{message}");
    assert!(message.contains("harness = false"), "{message}");
    assert!(
        message.contains("before building an async runtime"),
        "{message}"
    );
}

/// Without `workers`, a pool has one worker per CPU; with it, that many.
#[test]
fn workers_default_to_the_cpu_count() {
    procpool_worker::link();
    let pool = Pool::builder().build().unwrap();
    assert_eq!(pool.workers(), num_cpus::get());
    assert_eq!(pool.submit(Square(3)).unwrap().wait(), Ok(9));
    assert_eq!(builder().workers(3).build().unwrap().workers(), 3);
}

/// The limit a `TimedOut` error names; panics on any other outcome.
fn timed_out_after(outcome: Result<u64, TaskError>) -> Duration {
    match outcome {
        Err(TaskError::TimedOut { after, .. }) => after,
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn a_task_s_own_timeout_is_the_one_that_counts() {
    let pool = builder().timeout(Duration::from_secs(30)).build().unwrap();
    let short = TaskOptions::new().timeout(Duration::from_millis(300));
    let hung = pool.submit_with(Fault::Hang, &short).unwrap();
    assert_eq!(timed_out_after(hung.wait()), Duration::from_millis(300));
    // Where the pool has no timeout, too, through `try_submit_with`.
    let pool = builder().build().unwrap();
    let hung = pool.try_submit_with(Fault::Hang, &short).unwrap();
    assert_eq!(timed_out_after(hung.wait()), Duration::from_millis(300));
}

#[test]
fn no_timeout_outlives_the_pools() {
    let pool = builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let free = TaskOptions::new().no_timeout();
    let lasting = pool.submit_with(Fault::Sleep(600), &free).unwrap();
    let plain = pool.submit(Fault::Sleep(600)).unwrap();
    assert_eq!(lasting.wait(), Ok(600));
    assert_eq!(timed_out_after(plain.wait()), Duration::from_millis(200));
}

/// A temporary file for a `Tally` log, named after `what`.
fn tally_log(what: &str) -> std::path::PathBuf {
    let log = std::env::temp_dir().join(format!("procpool-{what}-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    log
}

fn crashing(log: &std::path::Path, n: u64) -> Tally {
    Tally {
        log: log.to_owned(),
        n,
        pad: 0,
        crash: true,
        sleep_ms: 0,
    }
}

/// A task that always crashes runs once plus its own retries, more or fewer than the
/// pool's, alone or in a map.
#[test]
fn a_task_s_own_retries_are_the_ones_that_count() {
    let log = tally_log("own-retries");
    let pool = builder().retries(1).core_dumps(false).build().unwrap();
    let thrice = TaskOptions::new().retries(2);
    let e = pool.submit_with(crashing(&log, 0), &thrice).unwrap().wait();
    assert_eq!(e.unwrap_err().signal(), Some(11));
    let once = TaskOptions::new().retries(0);
    let e = pool.submit_with(crashing(&log, 1), &once).unwrap().wait();
    assert_eq!(e.unwrap_err().signal(), Some(11));
    let e = pool.submit(crashing(&log, 2)).unwrap().wait();
    assert_eq!(e.unwrap_err().signal(), Some(11));
    let outs: Vec<_> = pool
        .map_with([crashing(&log, 3), crashing(&log, 4)], &thrice)
        .collect();
    assert!(outs
        .iter()
        .all(|o| o.as_ref().unwrap_err().signal() == Some(11)));
    let runs = read_tally(&log);
    let _ = std::fs::remove_file(&log);
    let count = |n| runs.get(&n).map_or(0, |&(count, _)| count);
    assert_eq!(
        [0, 1, 2, 3, 4].map(count),
        [3, 1, 2, 3, 3],
        "runs of each task"
    );
}

/// A map's options hold for each of its tasks: a hang among quick tasks times out by
/// the map's limit, alone, in both maps.
#[test]
fn a_map_s_timeout_applies_to_each_task() {
    let pool = builder().build().unwrap();
    let short = TaskOptions::new().timeout(Duration::from_millis(300));
    let inputs = || (0..50u64).map(|i| if i == 20 { Fault::Hang } else { Fault::Ok(i) });
    for (i, out) in pool.map_with(inputs(), &short).enumerate() {
        if i == 20 {
            assert_eq!(timed_out_after(out), Duration::from_millis(300));
        } else {
            assert_eq!(out, Ok(i as u64), "task {i}");
        }
    }
    let mut seen = 0;
    for (i, out) in pool.map_unordered_with(inputs(), &short) {
        if i == 20 {
            assert_eq!(timed_out_after(out), Duration::from_millis(300));
        } else {
            assert_eq!(out, Ok(i as u64), "task {i}");
        }
        seen += 1;
    }
    assert_eq!(seen, 50);
    // Tasks of 400 ms pass with no timeout though the pool's is 200 ms.
    let pool = builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let free = TaskOptions::new().no_timeout();
    let outs: Vec<_> = pool
        .map_with([Fault::Sleep(400), Fault::Sleep(400)], &free)
        .collect();
    assert_eq!(outs, [Ok(400), Ok(400)]);
}

/// Three tasks that end far apart, submitted longest first, on a fresh pool of three
/// workers (so none waits behind another).
fn staggered(pool: &Pool) -> Vec<TaskHandle<u64>> {
    [800, 50, 400]
        .map(|ms| pool.submit(Fault::Sleep(ms)).unwrap())
        .into()
}

#[test]
fn as_completed_yields_each_outcome_once_in_the_order_they_finish() {
    let pool = builder().workers(3).build().unwrap();
    let outcomes: Vec<_> = procpool::as_completed(staggered(&pool)).collect();
    assert_eq!(outcomes, [(1, Ok(50)), (2, Ok(400)), (0, Ok(800))]);
    // Failures come the same way, and tasks already finished come first, in order.
    let first = pool.submit(Fault::Panic("early".into())).unwrap();
    let second = pool.submit(Fault::Ok(7)).unwrap();
    assert!(common::eventually(Duration::from_secs(10), || {
        first.is_finished() && second.is_finished()
    }));
    let later = pool.submit(Fault::Sleep(300)).unwrap();
    let outcomes: Vec<_> = procpool::as_completed([later, first, second]).collect();
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[0].0, 1);
    assert!(outcomes[0].1.as_ref().unwrap_err().is_panic());
    assert_eq!(outcomes[1], (2, Ok(7)));
    assert_eq!(outcomes[2], (0, Ok(300)));
}

#[test]
fn wait_any_takes_out_the_first_handle_to_finish() {
    let pool = builder().workers(3).build().unwrap();
    let mut handles = staggered(&pool);
    let mut order = Vec::new();
    while let Some((index, outcome)) = TaskHandle::wait_any(&mut handles) {
        order.push((index, outcome.unwrap()));
    }
    // Positions as the vector stood at each call: [800, 50, 400], [800, 400], [800].
    assert_eq!(order, [(1, 50), (1, 400), (0, 800)]);
}

/// A task function defined in the program itself, private, as a program's own would be.
#[procpool::task]
fn shout(text: String) -> String {
    text.to_uppercase()
}

#[test]
fn a_program_s_own_task_function_runs_in_its_workers() {
    let pool = builder().build().unwrap();
    assert_eq!(pool.call(shout, "hi".into()).unwrap().wait().unwrap(), "HI");
    let words = ["a", "b", "c"].map(String::from);
    let loud: Vec<String> = pool
        .map_fn(shout, words.clone())
        .map(Result::unwrap)
        .collect();
    // Where a function is expected, the task function passes as its pointer.
    assert_eq!(loud, words.map(*shout));
}

/// A call the pool refuses hands back the input, not the `Call` around it.
#[test]
fn a_refused_call_hands_the_input_back() {
    use procpool_worker::functions::{half, spin};
    let pool = builder().workers(1).max_in_flight(1).build().unwrap();
    let busy = pool.call(spin, 300).unwrap();
    let full = pool.try_call(half, 8).unwrap_err();
    assert!(full.is_full());
    assert_eq!(full.into_inner(), 8);
    let full = pool
        .try_call_with(half, 10, &TaskOptions::new().retries(1))
        .unwrap_err();
    assert_eq!(full.into_inner(), 10);
    assert_eq!(busy.wait(), Ok(300));
    pool.shutdown();
    let closed = pool.call(half, 12).unwrap_err();
    assert!(closed.is_closed());
    assert_eq!(closed.into_inner(), 12);
}

/// A task's own options (`Task::options`, here those the attribute gave `spin`) hold for
/// `submit` and `map` of it as for `call`, under the options of the submit or the map.
#[test]
fn a_task_s_own_options_hold_for_submit_and_map() {
    use procpool::Call;
    use procpool_worker::functions::spin;
    let pool = builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let hung = || Call::new(spin, 60_000);
    let after = |outcome: Result<u64, TaskError>| timed_out_after(outcome);
    assert_eq!(
        after(pool.submit(hung()).unwrap().wait()),
        Duration::from_secs(1)
    );
    let short = TaskOptions::new().timeout(Duration::from_millis(300));
    assert_eq!(
        after(pool.submit_with(hung(), &short).unwrap().wait()),
        Duration::from_millis(300)
    );
    let outcomes: Vec<_> = pool.map([Call::new(spin, 400), hung()]).collect();
    assert_eq!(
        outcomes[0],
        Ok(400),
        "past the pool's limit, within the task's"
    );
    assert_eq!(after(outcomes[1].clone()), Duration::from_secs(1));
    let (_, outcome) = pool.map_unordered_with([hung()], &short).next().unwrap();
    assert_eq!(after(outcome), Duration::from_millis(300));
}

#[test]
fn completion_callbacks_get_every_outcome_without_a_waiting_thread() {
    let pool = builder().core_dumps(false).build().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for n in 0..40u64 {
        let sent = tx.clone();
        let task = match n {
            13 => pool.submit(Fault::Panic("thirteen".into())).unwrap(),
            29 => pool.submit(Fault::Abort).unwrap(),
            _ => pool.submit(Square(n)).unwrap(),
        };
        task.on_complete(move |outcome| sent.send((n, outcome)).unwrap());
    }
    drop(tx);
    let mut outcomes: Vec<_> = rx.iter().collect();
    outcomes.sort_by_key(|(n, _)| *n);
    assert_eq!(outcomes.len(), 40, "one callback per task");
    for (n, outcome) in outcomes {
        match n {
            13 => assert!(outcome.unwrap_err().is_panic()),
            29 => assert_eq!(outcome.unwrap_err().signal(), Some(6)),
            _ => assert_eq!(outcome, Ok(n * n)),
        }
    }
    // A callback left on a task the pool never runs hears that the pool closed.
    let pool = builder().workers(1).build().unwrap();
    let busy = pool.submit(Fault::Sleep(200)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    pool.submit(Square(3))
        .unwrap()
        .on_complete(move |outcome| tx.send(outcome).unwrap());
    pool.terminate();
    assert!(busy.wait().is_err());
    assert!(matches!(rx.recv().unwrap(), Err(TaskError::PoolClosed)));
}

/// A map's inputs on a pool that refuses work fail one by one as the map is iterated,
/// pulled as lazily as on a working pool: an endless input must not be swallowed
/// (each input failed at once frees no room in the map's window, unless it counts).
#[test]
fn a_closed_pool_fails_a_map_s_inputs_as_lazily_as_it_runs_them() {
    let pool = builder().build().unwrap();
    pool.shutdown();
    let pulled = AtomicUsize::new(0);
    // Long enough to see it swallowed, short enough to end if it is.
    let inputs = (0u64..200_000).map(|n| {
        pulled.fetch_add(1, Ordering::SeqCst);
        Square(n)
    });
    let mut outcomes = pool.map(inputs);
    assert_eq!(outcomes.next(), Some(Err(TaskError::PoolClosed)));
    let pulled = pulled.load(Ordering::SeqCst);
    // The window of a working pool: 4 batches per worker, 32 tasks per worker.
    assert!(pulled <= 1_000, "{pulled} inputs pulled for one outcome");
    assert!(outcomes.all(|outcome| outcome == Err(TaskError::PoolClosed)));
}

/// A timeout too long to be a deadline (`Duration::MAX`, "practically none") is no
/// limit: the task runs and has its outcome, and the slot lives on.
#[test]
fn a_timeout_too_long_for_a_deadline_is_no_limit() {
    let pool = builder().workers(1).build().unwrap();
    let endless = TaskOptions::new().timeout(Duration::MAX);
    let handle = pool.submit_with(Fault::Sleep(50), &endless).unwrap();
    let outcome = handle.wait_timeout(Duration::from_secs(20));
    assert_eq!(outcome.ok(), Some(Ok(50)), "the task had no outcome");
    let mapped: Vec<_> = pool.map_with((0..20).map(Square), &endless).collect();
    assert_eq!(mapped.len(), 20);
    assert!(mapped.iter().all(Result::is_ok));
    assert_eq!(pool.submit(Square(4)).unwrap().wait(), Ok(16));
}

/// A blocking map on a pool with an in-flight limit hands each outcome over as it
/// comes: it does not wait for a place for its next batch while outcomes it has out
/// are in. (It used to wait until its window was full: with 2 workers and a limit of
/// 16, the first outcome reached the caller once 48 tasks had finished.)
#[test]
fn a_map_under_an_in_flight_limit_hands_over_outcomes_as_they_come() {
    for unordered in [false, true] {
        let pool = builder().max_in_flight(16).build().unwrap();
        let naps = (0..200).map(|_| Fault::Sleep(30));
        let first = if unordered {
            pool.map_unordered(naps).next().map(|(_, outcome)| outcome)
        } else {
            pool.map(naps).next()
        };
        // The map is dropped by now (its unfinished tasks cancelled): count the ok ones.
        let finished = pool.stats().finished.ok();
        assert_eq!(first, Some(Ok(30)));
        // Two workers: the first outcome comes with the first few tasks done.
        assert!(
            finished <= 8,
            "{finished} tasks finished before the first outcome reached the caller (unordered: {unordered})"
        );
    }
}
