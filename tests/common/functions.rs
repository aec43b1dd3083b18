//! Task functions (`#[procpool::task]`, from `procpool_worker::functions`) in every launch
//! mode: through `call` and both `map_fn`s, and their faults, timeouts and retries.
//! `matrix.rs` lists these with the rest.

use std::time::Duration;

use procpool::{PoolBuilder, TaskError, TaskOptions};
use procpool_worker::functions::{
    crash_logged, half, multiply_add, panic_at_zero, spin, worker_pid,
};
use procpool_worker::read_tally;

/// The limit a `TimedOut` error names; panics on any other outcome.
fn timed_out_after<T: std::fmt::Debug>(outcome: &Result<T, TaskError>) -> Duration {
    match outcome {
        Err(TaskError::TimedOut { after, .. }) => *after,
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// One argument, several (a tuple) and none (`()`), one call at a time and in maps of
/// either order: each input gets its one outcome, the same as the function called here.
pub(crate) fn task_functions_run_through_call_and_map_fn(b: PoolBuilder) {
    let pool = b.build().unwrap();
    assert_eq!(pool.call(multiply_add, (6, 7, 8)).unwrap().wait(), Ok(50));
    assert_eq!(
        multiply_add(6, 7, 8),
        50,
        "called here, it is the same function"
    );
    let pid = pool.call(worker_pid, ()).unwrap().wait().unwrap();
    assert_ne!(pid, std::process::id());
    assert_eq!(pool.try_call(half, 8).unwrap().wait(), Ok(4));

    let inputs = || (0..300u64).map(|n| (n, n, 1));
    let expected: Vec<u64> = inputs().map(|(a, b, c)| multiply_add(a, b, c)).collect();
    let ordered: Vec<u64> = pool
        .map_fn(multiply_add, inputs())
        .map(Result::unwrap)
        .collect();
    assert_eq!(ordered, expected);
    let mut seen = vec![0; 300];
    for (i, outcome) in pool.map_fn_unordered(multiply_add, inputs()) {
        assert_eq!(outcome, Ok(expected[i]), "input {i}");
        seen[i] += 1;
    }
    assert!(
        seen.iter().all(|&n| n == 1),
        "one outcome per input: {seen:?}"
    );
}

/// A task function that panics ends in `Panicked` with its message and place, one that
/// returns `Err` in `Failed` with the error's chain; in a map, those inputs alone.
pub(crate) fn task_function_faults_are_typed(b: PoolBuilder) {
    let pool = b.build().unwrap();
    let panicked = pool
        .call(panic_at_zero, (0, "zero is not allowed".into()))
        .unwrap()
        .wait();
    let Err(TaskError::Panicked { message, location }) = &panicked else {
        panic!("expected a panic, got {panicked:?}");
    };
    assert_eq!(message, "zero is not allowed");
    assert!(
        location.as_deref().unwrap_or("").contains("functions.rs"),
        "{location:?}"
    );
    let failed = TaskError::Failed {
        chain: vec!["odd input".into(), "3 has no half".into()],
    };
    assert_eq!(pool.call(half, 3).unwrap().wait(), Err(failed));

    let halves: Vec<_> = pool.map_fn(half, 0..40).collect();
    assert_eq!(halves.len(), 40);
    for (n, outcome) in (0..).zip(&halves) {
        match outcome {
            Ok(h) => assert_eq!((n % 2, *h), (0, n / 2)),
            Err(e) => assert!(n % 2 == 1 && e.is_failed(), "{n}: {e:?}"),
        }
    }
    let inputs = (0..40u64).map(|n| (n % 10, "a zero".to_owned()));
    let mut outcomes: Vec<_> = pool.map_fn_unordered(panic_at_zero, inputs).collect();
    outcomes.sort_unstable_by_key(|(i, _)| *i);
    assert_eq!(outcomes.len(), 40);
    for (i, outcome) in outcomes {
        assert_eq!(outcome.is_err(), i % 10 == 0, "{i}: {outcome:?}");
        if let Err(e) = outcome {
            assert!(e.is_panic(), "{e:?}");
        }
    }
}

/// `spin` has a limit of its own, 1 s: it goes over the pool's, a call's own goes over
/// it, and a timed-out task names the limit it ran into; in maps too.
pub(crate) fn a_task_function_s_own_timeout_is_the_one_that_counts(b: PoolBuilder) {
    let pool = b.timeout(Duration::from_millis(200)).build().unwrap();
    assert_eq!(
        pool.call(spin, 400).unwrap().wait(),
        Ok(400),
        "past the pool's limit"
    );
    let hung = pool.call(spin, 60_000).unwrap().wait();
    assert_eq!(timed_out_after(&hung), Duration::from_secs(1));
    let short = TaskOptions::new().timeout(Duration::from_millis(300));
    let hung = pool.call_with(spin, 60_000, &short).unwrap().wait();
    assert_eq!(timed_out_after(&hung), Duration::from_millis(300));

    let outcomes: Vec<_> = pool.map_fn(spin, [1, 60_000, 2]).collect();
    assert_eq!(outcomes[0], Ok(1));
    assert_eq!(timed_out_after(&outcomes[1]), Duration::from_secs(1));
    assert_eq!(outcomes[2], Ok(2));
    let mut outcomes: Vec<_> = pool.map_fn_unordered(spin, [60_000, 3]).collect();
    outcomes.sort_unstable_by_key(|(i, _)| *i);
    assert_eq!(timed_out_after(&outcomes[0].1), Duration::from_secs(1));
    assert_eq!(outcomes[1], (1, Ok(3)));
}

/// `crash_logged` always crashes and has 2 retries of its own: it runs three times
/// where the pool allows none, once where a call says 0; in a map, three times each.
pub(crate) fn a_task_function_s_own_retries_are_the_ones_that_count(b: PoolBuilder) {
    let log = std::env::temp_dir().join(format!(
        "procpool-fn-retries-{}-{}",
        std::process::id(),
        super::matrix::unique()
    ));
    let _ = std::fs::remove_file(&log);
    let pool = b.workers(1).retries(0).core_dumps(false).build().unwrap();
    let crashed =
        |outcome: &Result<u64, TaskError>| outcome.as_ref().is_err_and(|e| e.signal() == Some(11));
    assert!(crashed(
        &pool.call(crash_logged, (log.clone(), 0)).unwrap().wait()
    ));
    let once = TaskOptions::new().retries(0);
    let outcome = pool
        .call_with(crash_logged, (log.clone(), 1), &once)
        .unwrap()
        .wait();
    assert!(crashed(&outcome), "{outcome:?}");
    let outcomes: Vec<_> = pool
        .map_fn(crash_logged, [(log.clone(), 2), (log.clone(), 3)])
        .collect();
    assert!(outcomes.iter().all(crashed), "{outcomes:?}");
    let runs = read_tally(&log);
    let _ = std::fs::remove_file(&log);
    let count = |n| runs.get(&n).map_or(0, |&(count, _)| count);
    assert_eq!([0, 1, 2, 3].map(count), [3, 1, 3, 3], "runs of each task");
}
