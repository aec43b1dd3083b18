//! The demo batch: 240 CPU-bound jobs (counting primes), some of which panic, segfault
//! or hang. A live progress bar counts the outcomes by kind as they come; each worker
//! lost to a job is told as it is replaced; at the end, a table of the outcomes by
//! kind, and the pool's own stats checked against the outcomes received. Every job
//! gets exactly one outcome, or the demo exits with an error.
//!
//! Run it with `cargo run --release --example demo`; add `-- --fork-server` to fork the
//! workers from a fork server instead of re-executing the program for each. The bar is
//! drawn only when stderr is a terminal.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use procpool::indicatif::MultiProgress;
use procpool::{Event, ExitCause, ExitKind, Launch, OutputMode, Pool, TaskError, TaskErrorKind};
use serde::{Deserialize, Serialize};

/// What a job does besides its work: the faults planted in the batch.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Fault {
    None,
    Panic,
    Segfault,
    Hang,
}

/// Counts the primes in `start..end` by trial division, unless `fault` strikes first.
#[procpool::task]
fn count_primes(start: u64, end: u64, fault: Fault) -> u64 {
    match fault {
        Fault::None => {}
        Fault::Panic => panic!("malformed record at {start}"),
        Fault::Segfault => {
            // Rust's runtime handles SIGSEGV to report stack overflows; for any other
            // it restores the default action and returns. So the first raise is
            // swallowed and the second kills the worker, as a wild pointer in a C
            // library would.
            let _ = signal::raise(Signal::SIGSEGV);
            let _ = signal::raise(Signal::SIGSEGV);
        }
        Fault::Hang => loop {
            std::thread::park();
        },
    }
    (start..end).filter(|&n| is_prime(n)).count() as u64
}

fn is_prime(n: u64) -> bool {
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    n >= 2
}

const JOBS: u64 = 240;
const SPAN: u64 = 40_000;

/// Job `i`: its range, and the fault planted in it, if any.
fn job(i: u64) -> (u64, u64, Fault) {
    let fault = match i {
        _ if i % 40 == 13 => Fault::Panic,
        _ if i % 60 == 29 => Fault::Segfault,
        _ if i % 80 == 71 => Fault::Hang,
        _ => Fault::None,
    };
    (i * SPAN, (i + 1) * SPAN, fault)
}

/// A row of the outcome table.
fn row(error: &TaskError) -> String {
    match error {
        TaskError::Signaled { name, .. } => format!("killed by {name}"),
        other => other.kind().name().replace('_', " "),
    }
}

/// Why a worker was lost, in a few words.
fn why(error: &TaskError) -> String {
    match error {
        TaskError::Signaled { name, .. } => format!("killed by {name}"),
        TaskError::TimedOut { after, .. } => format!("timed out after {after:?}"),
        other => other.to_string(),
    }
}

/// A worker lost to a task, told once its replacement has started.
#[derive(Default)]
struct Lost {
    pid: u32,
    why: String,
    /// The task it ran, once its outcome (or retry) is told.
    task: Option<String>,
}

/// Tells each worker lost to a task, and its replacement, as a line above the bar;
/// counts them.
#[derive(Clone, Default)]
struct Replacements {
    /// By slot: the worker lost there, until its replacement starts.
    lost: Arc<Mutex<HashMap<usize, Lost>>>,
    /// How many have been told.
    told: Arc<(Mutex<u64>, Condvar)>,
}

impl Replacements {
    fn hear(&self, event: &Event, bars: &MultiProgress) {
        let mut lost = self.lost.lock().unwrap();
        match event {
            Event::WorkerExited {
                slot,
                pid,
                cause: ExitCause::Lost(error),
                ..
            } => {
                let why = why(error);
                lost.insert(
                    *slot,
                    Lost {
                        pid: *pid,
                        why,
                        task: None,
                    },
                );
            }
            // The lost worker's task has its outcome (or runs again) before the slot
            // starts the next worker.
            Event::TaskFinished {
                slot: Some(slot),
                id,
                task,
                outcome: Err(_),
                ..
            }
            | Event::TaskRetried { slot, id, task, .. } => {
                if let Some(lost) = lost.get_mut(slot) {
                    lost.task.get_or_insert_with(|| format!("{task} {id}"));
                }
            }
            Event::WorkerStarted { slot, pid, .. } => {
                if let Some(gone) = lost.remove(slot) {
                    let running = gone
                        .task
                        .map(|task| format!(" while running {task}"))
                        .unwrap_or_default();
                    bars.suspend(|| {
                        println!(
                            "worker {} lost ({}{running}), replaced by {pid}",
                            gone.pid, gone.why
                        );
                    });
                    let (told, changed) = &*self.told;
                    *told.lock().unwrap() += 1;
                    changed.notify_all();
                }
            }
            _ => {}
        }
    }

    /// How many replacements have been told, once `expected` have or `limit` passed.
    fn told(&self, expected: u64, limit: Duration) -> u64 {
        let (told, changed) = &*self.told;
        let told = told.lock().unwrap();
        let (told, _) = changed
            .wait_timeout_while(told, limit, |told| *told < expected)
            .unwrap();
        *told
    }
}

fn main() -> anyhow::Result<()> {
    procpool::init();

    let timeout = Duration::from_secs(1);
    let launch = match std::env::args().nth(1).as_deref() {
        None => Launch::CurrentExe,
        Some("--fork-server") => Launch::ForkServer,
        Some(other) => anyhow::bail!("unknown argument {other:?} (try --fork-server)"),
    };
    // The bar and the lines printed above it share one MultiProgress.
    let bars = MultiProgress::new();
    let replacements = Replacements::default();
    let pool = Pool::builder()
        .launch(launch.clone())
        .timeout(timeout)
        .core_dumps(false)
        // Workers' own crash messages stay out of the demo's output (they would break
        // the bar up); each error still carries the last lines.
        .stderr(OutputMode::Null)
        .on_event({
            let (replacements, bars) = (replacements.clone(), bars.clone());
            move |event| replacements.hear(event, &bars)
        })
        .build()?;
    println!(
        "procpool demo: {JOBS} prime-counting jobs on {} worker processes{} (timeout {timeout:?})\n",
        pool.workers(),
        if launch.is_fork_server() {
            " forked by a fork server"
        } else {
            ""
        }
    );

    let started = Instant::now();
    let mut primes = 0;
    // Outcome kind: how many jobs, and the first error of that kind.
    let mut table: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut received: HashMap<Option<TaskErrorKind>, u64> = HashMap::new();
    let mut jobs = pool
        .map_fn_unordered(count_primes, (0..JOBS).map(job))
        .progress_in(&bars);
    for (i, outcome) in jobs.by_ref() {
        let (key, example) = match &outcome {
            Ok(count) => {
                primes += count;
                ("ok".to_owned(), String::new())
            }
            Err(e) => (row(e), format!("job {i}: {e}")),
        };
        table.entry(key).or_insert((0, example)).0 += 1;
        *received.entry(outcome.err().map(|e| e.kind())).or_default() += 1;
    }
    let elapsed = started.elapsed();
    let counted_by_bar = jobs.outcomes();
    // The last worker lost may still be starting its replacement. The bar stays until
    // that line is printed above it: a bar dropped leaves the MultiProgress, which
    // would then clear its lines without drawing them again.
    let told = replacements.told(pool.stats().worker_exits.lost(), Duration::from_secs(10));
    drop(jobs);

    println!("\noutcome              jobs  example");
    for (key, (count, example)) in &table {
        println!("{key:<20} {count:>4}  {example}");
    }
    let total: u64 = table.values().map(|(n, _)| n).sum();
    println!(
        "\n{JOBS} jobs, {total} outcomes, {primes} primes below {} in the jobs that finished, {:.2} s",
        JOBS * SPAN,
        elapsed.as_secs_f64()
    );
    anyhow::ensure!(total == JOBS, "{total} outcomes for {JOBS} jobs");

    // The pool's own counts, read right after the last outcome, must agree with what
    // came back.
    let stats = pool.stats();
    let replaced: Vec<String> = stats
        .worker_exits
        .nonzero()
        .filter_map(|(kind, n)| match kind {
            ExitKind::Lost(error) => Some(format!("{n} {}", error.name().replace('_', " "))),
            _ => None,
        })
        .collect();
    println!(
        "pool stats: {} ok, {} errors, {} queued, {} running; {} workers started, {} replaced ({})",
        stats.finished.ok(),
        stats.finished.all_errors(),
        stats.queued,
        stats.running,
        stats.worker_starts,
        stats.worker_exits.lost(),
        replaced.join(", "),
    );
    anyhow::ensure!(
        stats.finished.total() == JOBS && stats.queued + stats.running == 0,
        "the pool counts {stats:?} for {JOBS} jobs"
    );
    anyhow::ensure!(stats.finished.ok() == received.get(&None).copied().unwrap_or(0));
    for kind in TaskErrorKind::ALL {
        let got = received.get(&Some(kind)).copied().unwrap_or(0);
        anyhow::ensure!(
            stats.finished.errors(kind) == got,
            "{kind}: the pool counts {}, {got} received",
            stats.finished.errors(kind)
        );
    }
    anyhow::ensure!(
        counted_by_bar == stats.finished,
        "the bar counted {counted_by_bar:?}"
    );
    anyhow::ensure!(
        told == stats.worker_exits.lost(),
        "{told} replacements told, {} workers lost",
        stats.worker_exits.lost()
    );
    // Each segfault and each hang costs its worker; a panic does not.
    let planted = (0..JOBS)
        .filter(|&i| matches!(job(i).2, Fault::Segfault | Fault::Hang))
        .count() as u64;
    anyhow::ensure!(
        told == planted,
        "{told} workers replaced, {planted} planted to crash"
    );
    println!("the pool's stats agree with the {JOBS} outcomes received");
    Ok(())
}
