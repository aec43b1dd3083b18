//! The `progress` feature with real workers and planted faults: a map with a bar yields
//! what the same map yields without one, one outcome per input, and its bar (hidden,
//! so a test can read it) ends at the input count with counts that match the faults
//! planted and the workers they cost.
#![cfg(feature = "progress")]

use std::time::Duration;

use procpool::indicatif::ProgressBar;
use procpool::{Pool, TaskError, TaskErrorKind, TaskOptions};
use procpool_worker::functions::panic_at_zero;
use procpool_worker::Fault;

procpool::test_support!();

const INPUTS: u64 = 120;

fn pool() -> Pool {
    procpool_worker::link();
    Pool::builder()
        .workers(2)
        .core_dumps(false)
        .stderr(procpool::OutputMode::Null)
        .build()
        .unwrap()
}

/// The batch: mostly outputs, with 3 panics, a task's own error, 2 segfaults, an abort
/// and a hang that times out. The crashes and the timeout each cost a worker; a panic
/// and an error do not.
fn planted(i: u64) -> Fault {
    match i {
        7 | 50 | 93 => Fault::Panic(format!("input {i}")),
        20 => Fault::Fail,
        33 | 101 => Fault::Segfault,
        64 => Fault::Abort,
        80 => Fault::Hang,
        _ => Fault::Ok(i),
    }
}

/// What the bar says of the batch when it is done.
const PLANTED: &str =
    "ok 112 · panicked 3 · failed 1 · signaled 3 · timed out 1 · workers replaced 4";

fn options() -> TaskOptions {
    TaskOptions::new().timeout(Duration::from_secs(1))
}

/// An outcome as a test compares it: the output, or the kind of error.
fn shape(outcome: &Result<u64, TaskError>) -> Result<u64, TaskErrorKind> {
    outcome.as_ref().copied().map_err(TaskError::kind)
}

#[test]
fn a_map_with_a_bar_yields_what_it_yields_without_and_counts_the_faults() {
    let pool = pool();
    let plain: Vec<_> = pool
        .map_with((0..INPUTS).map(planted), &options())
        .map(|o| shape(&o))
        .collect();

    let bar = ProgressBar::hidden();
    let mut progress = pool
        .map_with((0..INPUTS).map(planted), &options())
        .progress_with(bar.clone());
    assert_eq!(
        progress.size_hint(),
        (INPUTS as usize, Some(INPUTS as usize))
    );
    assert_eq!(
        bar.length(),
        Some(INPUTS),
        "the map's length, on a bar without one"
    );
    let with_bar: Vec<_> = progress.by_ref().map(|o| shape(&o)).collect();

    assert_eq!(with_bar.len(), INPUTS as usize, "one outcome per input");
    assert_eq!(with_bar, plain);
    assert_eq!(bar.position(), INPUTS);
    assert!(bar.is_finished());
    assert_eq!(bar.message(), PLANTED);
    // The adapter's own counts, and the pool's: both runs, the same outcomes.
    let outcomes = progress.outcomes();
    assert_eq!(outcomes.ok(), 112);
    assert_eq!(outcomes.errors(TaskErrorKind::Signaled), 3);
    assert_eq!(outcomes.total(), INPUTS);
    let stats = pool.stats();
    assert_eq!(stats.finished.ok(), 2 * outcomes.ok());
    assert_eq!(stats.finished.all_errors(), 2 * outcomes.all_errors());
    assert_eq!(stats.worker_exits.lost(), 2 * 4);
    drop(progress);
    assert_eq!(bar.message(), PLANTED, "a map that ended is not stopped");
}

#[test]
fn an_unordered_map_of_a_task_function_counts_alike() {
    let pool = pool();
    let bar = ProgressBar::hidden();
    let inputs = (0..INPUTS).map(|i| (i % 40, format!("input {i}")));
    let mut seen: Vec<usize> = pool
        .map_fn_unordered(panic_at_zero, inputs)
        .progress_with(bar.clone())
        .map(|(index, outcome)| {
            let expected = index.is_multiple_of(40).then_some(TaskErrorKind::Panicked);
            assert_eq!(outcome.err().map(|e| e.kind()), expected, "input {index}");
            index
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..INPUTS as usize).collect::<Vec<_>>());
    assert_eq!(bar.position(), INPUTS);
    assert_eq!(bar.message(), "ok 117 · panicked 3");
}

#[test]
fn inputs_of_unknown_length_get_a_count_without_a_length() {
    let pool = pool();
    let bar = ProgressBar::hidden();
    let inputs = (0..50).filter(|i| i % 5 != 0).map(Fault::Ok);
    let sum: u64 = pool
        .map(inputs)
        .progress_with(bar.clone())
        .map(Result::unwrap)
        .sum();
    assert_eq!(sum, (0..50).filter(|i| i % 5 != 0).sum::<u64>());
    assert_eq!(bar.length(), None);
    assert_eq!(bar.position(), 40);
    assert_eq!(bar.message(), "ok 40");
}

#[test]
fn a_bar_of_the_caller_s_length_keeps_it_and_goes_on_with_the_next_map() {
    let pool = pool();
    let bar = ProgressBar::hidden();
    bar.set_length(1_000);
    let progress = pool.map((0..10).map(Fault::Ok)).progress_with(bar.clone());
    assert_eq!(progress.count(), 10);
    assert_eq!((bar.position(), bar.length()), (10, Some(1_000)));
    assert_eq!(bar.message(), "ok 10");
    assert!(!bar.is_finished(), "left for the next map to go on with");
    let progress = pool.map((0..990).map(Fault::Ok)).progress_with(bar.clone());
    assert_eq!(progress.count(), 990);
    assert_eq!(bar.position(), 1_000);
    assert!(bar.is_finished());
}

#[test]
fn a_map_dropped_early_leaves_its_bar_stopped_where_it_stood() {
    let pool = pool();
    let bar = ProgressBar::hidden();
    let mut progress = pool
        .map((0..10_000).map(|i| {
            if i == 1 {
                Fault::Abort
            } else {
                Fault::Sleep(2)
            }
        }))
        .progress_with(bar.clone());
    assert_eq!(progress.next(), Some(Ok(2)));
    assert!(progress.next().unwrap().unwrap_err().is_signal());
    assert_eq!(progress.next(), Some(Ok(2)));
    assert!(!bar.is_finished());
    drop(progress);
    assert!(bar.is_finished(), "abandoned");
    assert_eq!(bar.position(), 3);
    assert_eq!(
        bar.message(),
        "ok 2 · signaled 1 · workers replaced 1 · stopped"
    );
}

#[test]
fn a_map_s_size_hint_counts_down_to_zero() {
    let pool = pool();
    let mut map = pool.map((0..5).map(Fault::Ok));
    assert_eq!(map.size_hint(), (5, Some(5)));
    map.next();
    map.next();
    assert_eq!(map.size_hint(), (3, Some(3)));
    assert_eq!(map.by_ref().count(), 3);
    assert_eq!(map.size_hint(), (0, Some(0)));
}

#[cfg(feature = "async")]
#[test]
fn a_stream_with_a_bar_counts_alike() {
    use futures::StreamExt;

    let pool = pool();
    let bar = ProgressBar::hidden();
    let outcomes: Vec<_> = futures::executor::block_on(
        pool.map_with((0..INPUTS).map(planted), &options())
            .progress_with(bar.clone())
            .into_stream()
            .map(|o| shape(&o))
            .collect(),
    );
    assert_eq!(outcomes.len(), INPUTS as usize);
    assert_eq!(outcomes[20], Err(TaskErrorKind::Failed));
    assert_eq!(outcomes[80], Err(TaskErrorKind::TimedOut));
    assert_eq!(bar.position(), INPUTS);
    assert!(bar.is_finished());
    assert_eq!(bar.message(), PLANTED);
}
