//! The demo batch: 240 CPU-bound jobs (counting primes), some of which panic, segfault
//! or hang. Every job gets exactly one outcome; the run ends with a summary per outcome.
//!
//! Run it with `cargo run --release --example demo`; add `-- --fork-server` to fork the
//! workers from a fork server instead of re-executing the program for each.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use procpool::{BoxError, Launch, OutputMode, Pool, Task, TaskError};
use procpool_worker::{CountPrimes, Fault};
use serde::{Deserialize, Serialize};

/// One job of the batch: real work, or one of the faults a crash-prone job might have.
#[derive(Debug, Serialize, Deserialize)]
enum Job {
    Primes(CountPrimes),
    Fault(Fault),
}

impl Task for Job {
    const NAME: &'static str = "demo::Job";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        match self {
            Job::Primes(task) => task.run(),
            Job::Fault(task) => task.run(),
        }
    }
}

procpool::register!(Job);

const JOBS: u64 = 240;
const SPAN: u64 = 40_000;

fn job(i: u64) -> Job {
    match i {
        _ if i % 40 == 13 => Job::Fault(Fault::Panic(format!("malformed record in input {i}"))),
        _ if i % 60 == 29 => Job::Fault(Fault::Segfault),
        _ if i % 80 == 71 => Job::Fault(Fault::Hang),
        _ => Job::Primes(CountPrimes {
            start: i * SPAN,
            end: (i + 1) * SPAN,
        }),
    }
}

fn kind(error: &TaskError) -> String {
    match error {
        TaskError::Panicked { .. } => "panicked".into(),
        TaskError::Signaled { name, .. } => format!("killed by {name}"),
        TaskError::TimedOut { .. } => "timed out".into(),
        other => format!("other error: {other}"),
    }
}

fn main() -> anyhow::Result<()> {
    procpool::init();

    let timeout = Duration::from_secs(2);
    let launch = match std::env::args().nth(1).as_deref() {
        None => Launch::CurrentExe,
        Some("--fork-server") => Launch::ForkServer,
        Some(other) => anyhow::bail!("unknown argument {other:?} (try --fork-server)"),
    };
    let pool = Pool::builder()
        .launch(launch.clone())
        .timeout(timeout)
        .core_dumps(false)
        // Workers' own crash messages stay out of the demo's output; each error still
        // carries the last lines.
        .stderr(OutputMode::Null)
        .build()?;
    println!(
        "procpool demo: {JOBS} prime-counting jobs on {} worker processes{} (timeout {timeout:?})",
        pool.workers(),
        if launch.is_fork_server() {
            " forked by a fork server"
        } else {
            ""
        }
    );

    let started = Instant::now();
    let mut primes = 0;
    let mut tally: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (i, outcome) in pool.map((0..JOBS).map(job)).enumerate() {
        let (key, example) = match outcome {
            Ok(count) => {
                primes += count;
                ("ok".to_owned(), String::new())
            }
            Err(e) => (kind(&e), format!("job {i}: {e}")),
        };
        let entry = tally.entry(key).or_insert((0, example));
        entry.0 += 1;
    }
    let elapsed = started.elapsed();

    println!("\noutcome              jobs  example");
    for (key, (count, example)) in &tally {
        println!("{key:<20} {count:>4}  {example}");
    }
    let total: usize = tally.values().map(|(n, _)| n).sum();
    println!(
        "\n{total} jobs, {total} outcomes, {primes} primes below {} in the jobs that finished, {:.2} s",
        JOBS * SPAN,
        elapsed.as_secs_f64()
    );
    anyhow::ensure!(total as u64 == JOBS, "an outcome went missing");
    Ok(())
}
