//! Soak: 20,000 tasks with about 5% mixed faults. Every task gets exactly one, correct
//! outcome; nothing hangs; no zombie remains; descriptors return to their baseline.

mod common;

use std::time::Duration;

use procpool::{OutputMode, Pool, TaskError};
use procpool_worker::Fault;

procpool::test_support!();

const TASKS: u64 = 20_000;

/// The input for index `i`: one in twenty misbehaves, in five different ways.
fn input(i: u64) -> Fault {
    if i % 20 != 7 {
        return Fault::Ok(i);
    }
    match (i / 20) % 5 {
        0 => Fault::Panic(format!("soak {i}")),
        1 => Fault::Fail,
        2 => Fault::Segfault,
        3 => Fault::Exit(3),
        _ => Fault::Abort,
    }
}

fn check(i: u64, outcome: &Result<u64, TaskError>) {
    match input(i) {
        Fault::Ok(v) => assert_eq!(outcome, &Ok(v), "task {i}"),
        Fault::Panic(m) => assert!(
            matches!(outcome, Err(TaskError::Panicked { message, .. }) if *message == m),
            "task {i}: {outcome:?}"
        ),
        Fault::Fail => assert!(
            outcome.as_ref().is_err_and(TaskError::is_failed),
            "task {i}"
        ),
        Fault::Segfault => assert_eq!(outcome.as_ref().unwrap_err().signal(), Some(11)),
        Fault::Exit(3) => assert_eq!(outcome.as_ref().unwrap_err().exit_code(), Some(3)),
        Fault::Abort => assert_eq!(outcome.as_ref().unwrap_err().signal(), Some(6)),
        other => unreachable!("{other:?} is not in the soak mix"),
    }
}

#[test]
fn twenty_thousand_tasks_with_mixed_faults() {
    procpool_worker::link();
    // The first pool creates the process-wide parent-death lifeline (one pipe, two
    // descriptors, kept for the life of the process); the baseline includes it.
    Pool::builder().workers(1).build().unwrap().join();
    let baseline = common::open_fds();
    {
        let pool = Pool::builder()
            .workers(2)
            .core_dumps(false)
            // A thousand expected crash reports would bury the test output.
            .stderr(OutputMode::Null)
            .build()
            .unwrap();
        let mut seen = vec![0u8; TASKS as usize];
        let mut faults = 0;
        for (i, outcome) in pool.map_unordered((0..TASKS).map(input)) {
            seen[i] += 1;
            check(i as u64, &outcome);
            faults += usize::from(outcome.is_err());
        }
        assert!(
            seen.iter().all(|&n| n == 1),
            "an outcome was lost or repeated"
        );
        assert_eq!(faults, (TASKS / 20) as usize);
        pool.join();
    }
    let zombies = common::zombie_children();
    let described: Vec<String> = zombies
        .iter()
        .map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default())
        .collect();
    assert!(zombies.is_empty(), "{described:?}");
    assert!(
        common::eventually(Duration::from_secs(5), || common::open_fds() == baseline),
        "descriptors: {baseline} before, {} after",
        common::open_fds()
    );
}
