//! Process hygiene: no worker outlives its parent or its pool, no zombie stays behind,
//! and the parent's descriptors come back to their baseline.
//!
//! These tests look at this process's children, so they take a lock and never run at
//! the same time as each other.

mod common;

use std::process::{Command, Stdio as StdStdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use procpool::{Pool, TaskError};
use procpool_worker::{Fault, MarkCleanExit, PidAfter, WorkerPid};

procpool::test_support!();

static ALONE: Mutex<()> = Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    procpool_worker::link();
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The parent process the kill tests SIGKILL: a pool of two workers, one of which left
/// a process running in the background (in its group); with `busy`, both workers then
/// run endless tasks, otherwise they wait for work.
fn parent_helper(busy: bool) {
    let pool = Pool::builder().workers(2).build().unwrap();
    pool.submit(Fault::SpawnSleep(600)).unwrap().wait().unwrap();
    let _busy: Vec<_> = (0..2)
        .filter(|_| busy)
        .map(|_| pool.submit(Fault::Hang).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
#[ignore = "the parent process of parent_killed_while_workers_are_busy; run by it"]
fn busy_parent_helper() {
    parent_helper(true);
}

#[test]
#[ignore = "the parent process of parent_killed_while_workers_are_idle; run by it"]
fn idle_parent_helper() {
    parent_helper(false);
}

/// Two busy workers and a task's background process, all gone with the parent.
#[test]
fn parent_killed_while_workers_are_busy() {
    let _alone = alone();
    let args = ["--exact", "busy_parent_helper", "--include-ignored", "-q"];
    common::kill_helper_parent(&args, 3);
}

/// Two idle workers and a task's background process, all gone with the parent. An idle
/// worker sees its link close before its watchdog acts; it must not just exit and
/// leave the background process to live on.
#[test]
fn parent_killed_while_workers_are_idle() {
    let _alone = alone();
    let args = ["--exact", "idle_parent_helper", "--include-ignored", "-q"];
    common::kill_helper_parent(&args, 3);
}

#[test]
fn dropping_a_pool_with_a_thousand_queued_tasks_returns_promptly() {
    let _alone = alone();
    let me = std::process::id();
    let pool = Pool::builder().workers(2).build().unwrap();
    let first = pool.submit(WorkerPid).unwrap().wait().unwrap();
    let handles: Vec<_> = (0..1000)
        .map(|_| pool.submit(Fault::Sleep(20)).unwrap())
        .collect();
    assert!(common::eventually(
        Duration::from_secs(30),
        || common::children_of(me).len() == 2
    ));
    let workers = common::children_of(me);
    assert!(workers.contains(&first));
    let started = Instant::now();
    drop(pool);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "drop took {took:?}");
    let mut finished = 0;
    for h in handles {
        match h.wait() {
            Ok(20) => finished += 1,
            Err(TaskError::PoolClosed) => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert!(finished < 1000, "the drop waited for the whole queue");
    assert!(
        common::children_of(me).is_empty(),
        "left behind: {:?}",
        common::children_of(me)
    );
    assert!(common::zombie_children().is_empty());
}

#[test]
fn descriptors_do_not_grow_with_queued_tasks() {
    let _alone = alone();
    let pool = Pool::builder().workers(2).build().unwrap();
    // Both workers up, and the thread that reads their pipes: what an idle pool holds.
    let both: Vec<_> = (0..2)
        .map(|_| pool.submit(PidAfter(300)).unwrap())
        .collect();
    let pids: Vec<u32> = both.into_iter().map(|h| h.wait().unwrap()).collect();
    assert_ne!(pids[0], pids[1]);
    assert!(common::eventually(Duration::from_secs(10), || {
        common::has_thread("procpool-output")
    }));
    let idle = common::open_fds();
    let handles: Vec<_> = (0..5000)
        .map(|_| pool.submit(Fault::Ok(1)).unwrap())
        .collect();
    let queued = common::open_fds();
    for h in handles {
        assert_eq!(h.wait(), Ok(1));
    }
    assert!(
        queued <= idle + 4,
        "{idle} descriptors idle, {queued} with 5,000 tasks queued"
    );
}

#[test]
#[ignore = "started by a_worker_without_init_refuses_to_build_pools, with PROCPOOL_WORKER set"]
fn missing_init_helper() {
    let built = Pool::builder().workers(1).build();
    assert!(
        matches!(built, Err(procpool::BuildError::MissingInit)),
        "{built:?}"
    );
}

#[test]
fn a_worker_without_init_refuses_to_build_pools() {
    // A re-executed program whose main skipped procpool::init() would otherwise start
    // pools of its own, which would start more workers, without end.
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "missing_init_helper", "--include-ignored", "-q"])
        .env("PROCPOOL_WORKER", "/nonexistent/listener")
        .stdout(StdStdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the helper's assertion failed: {status}");
}

/// A worker let go with `Shutdown` exits normally: its exit handlers run. Three are
/// recycled after one task each while the pool runs; five more are each let go by
/// `join`, whose slot thread (the one that spawned the worker) ends right after. Neither the
/// closed link that follows `Shutdown` nor that thread's end (which sends the worker
/// its parent-death signal) may make it kill itself.
#[test]
fn a_retired_worker_exits_normally() {
    let _alone = alone();
    let dir = std::env::temp_dir().join(format!("procpool-clean-exit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let marks: Vec<_> = (0..8).map(|i| dir.join(format!("worker-{i}"))).collect();
    let recycling = Pool::builder()
        .workers(1)
        .max_tasks_per_worker(1)
        .build()
        .unwrap();
    for mark in &marks[..3] {
        let task = MarkCleanExit(mark.display().to_string());
        recycling.submit(task).unwrap().wait().unwrap();
    }
    recycling.shutdown();
    recycling.join();
    // The race with the slot thread's end is narrow: five pools joined.
    for mark in &marks[3..] {
        let joined = Pool::builder().workers(1).build().unwrap();
        let task = MarkCleanExit(mark.display().to_string());
        joined.submit(task).unwrap().wait().unwrap();
        joined.shutdown();
        joined.join();
    }
    let missing: Vec<_> = marks
        .iter()
        .filter(|mark| !common::eventually(Duration::from_secs(5), || mark.exists()))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        missing.is_empty(),
        "these workers did not exit normally: {missing:?}"
    );
}
