//! Per-task timeouts and retries: a function's own default from its attribute, one
//! call's own limit with `TaskOptions`, and waiting for whichever task ends first.
//!
//! Run it with `cargo run --example timeouts`.

use std::time::{Duration, Instant};

use procpool::{TaskError, TaskOptions};

/// Sleeps `ms` milliseconds, then returns them. Unless a call says otherwise, it may
/// run for 1 s; the pool's own timeout does not apply to it.
#[procpool::task(timeout = "1s")]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Aborts its worker the first time it runs for `marker`; runs clean the next time.
/// With `retries = 1` a crash runs it once more, on a new worker.
#[procpool::task(retries = 1)]
fn flaky(marker: std::path::PathBuf) -> String {
    if std::fs::create_dir(&marker).is_ok() {
        std::process::abort();
    }
    "ran clean on the retry".to_owned()
}

fn main() -> anyhow::Result<()> {
    procpool::init();
    let pool = procpool::Pool::builder()
        .workers(2)
        .timeout(Duration::from_millis(100))
        .build()?;

    // The attribute's 1 s applies, not the pool's 100 ms.
    let ms = pool.call(nap, 300)?.wait()?;
    println!("nap(300): {ms} ms, within the function's own 1 s");

    // Past its own limit, the task times out and says which limit it had.
    match pool.call(nap, 5_000)?.wait() {
        Err(TaskError::TimedOut { after, .. }) => {
            println!("nap(5000): timed out after {after:?}, its worker replaced");
            anyhow::ensure!(after == Duration::from_secs(1), "wrong limit {after:?}");
        }
        other => anyhow::bail!("nap(5000) should time out, got {other:?}"),
    }

    // One call's own limit beats the function's.
    let short = TaskOptions::new().timeout(Duration::from_millis(200));
    let outcome = pool.call_with(nap, 600, &short)?.wait();
    println!("nap(600) with a 200 ms limit: {outcome:?}");
    anyhow::ensure!(outcome.is_err_and(|e| e.is_timeout()), "should time out");

    // A crash retried on a fresh worker.
    let marker = std::env::temp_dir().join(format!("procpool-flaky-{}", std::process::id()));
    let outcome = pool.call(flaky, marker.clone())?.wait();
    let _ = std::fs::remove_dir(&marker);
    println!("flaky: {outcome:?}");
    anyhow::ensure!(outcome.is_ok(), "the retry should run clean");

    // Whichever of several tasks ends first, in the order they end.
    let started = Instant::now();
    let handles = [400, 100, 250]
        .into_iter()
        .map(|ms| pool.call(nap, ms))
        .collect::<Result<Vec<_>, _>>()?;
    let mut order = Vec::new();
    for (index, outcome) in procpool::as_completed(handles) {
        let ms = outcome?;
        println!("task {index} ({ms} ms) done at {:?}", started.elapsed());
        order.push(ms);
    }
    order.sort_unstable();
    anyhow::ensure!(order == [100, 250, 400], "one outcome each: {order:?}");
    Ok(())
}
