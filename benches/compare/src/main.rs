//! One measurement per process: `compare <peer> <workload> [size]` runs one workload on
//! one peer and prints `<workload>.<peer>.<metric> <value>` lines. `run.sh` calls it in
//! interleaved rounds, next to `peers.py` (Python's multiprocessing), and summarises.
//!
//! Peers: `procpool` (re-exec workers), `procpool-fork` (fork server), `procspawn`,
//! `rayon`, `raw` (a pipe round trip and memcpy, the hardware's own figures), and
//! `cluster` (procpool-cluster over a redis-server of its own; rows
//! `cluster.<peer>.<metric>`, see cluster.rs).

mod cluster;
mod redis_server;

use std::hint::black_box;
use std::io::{Read, Write};
use std::process::{Command, Stdio as StdStdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use procpool::{BoxError, Launch, Pool, PoolBuilder, SharedSlice, OutputMode, Task};
use serde::{Deserialize, Serialize};

/// The trivial task: u64 → u64.
#[derive(Serialize, Deserialize)]
struct Inc(u64);

impl Task for Inc {
    const NAME: &'static str = "compare::Inc";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        Ok(self.0 + 1)
    }
}
procpool::register!(Inc);

/// A slice of the CPU-bound kernel.
#[derive(Serialize, Deserialize)]
struct Primes(u64, u64);

impl Task for Primes {
    const NAME: &'static str = "compare::Primes";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        Ok(procpool_worker::count_primes(self.0, self.1))
    }
}
procpool::register!(Primes);

/// A numeric array in, the same array scaled out.
#[derive(Serialize, Deserialize)]
struct Scale(Vec<f64>);

impl Task for Scale {
    const NAME: &'static str = "compare::Scale";
    type Output = Vec<f64>;
    fn run(self) -> Result<Vec<f64>, BoxError> {
        let mut v = self.0;
        v.iter_mut().for_each(|x| *x *= 2.0);
        Ok(v)
    }
}
procpool::register!(Scale);

/// The same in shared memory: scaled in place, or (`new_out`) into a new array the
/// worker makes.
#[derive(Serialize, Deserialize)]
struct ScaleShared {
    data: SharedSlice<f64>,
    new_out: bool,
}

impl Task for ScaleShared {
    const NAME: &'static str = "compare::ScaleShared";
    type Output = SharedSlice<f64>;
    fn run(self) -> Result<SharedSlice<f64>, BoxError> {
        let mut data = self.data;
        if !self.new_out {
            data.iter_mut().for_each(|x| *x *= 2.0);
            return Ok(data);
        }
        let mut out = SharedSlice::zeroed(data.len())?;
        out.iter_mut().zip(data.iter()).for_each(|(o, x)| *o = x * 2.0);
        Ok(out)
    }
}
procpool::register!(ScaleShared);

/// About `micros` of CPU work; segfaults instead when asked.
#[derive(Serialize, Deserialize)]
struct Busy {
    micros: u64,
    segfault: bool,
}

impl Task for Busy {
    const NAME: &'static str = "compare::Busy";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        if self.segfault {
            // SAFETY: none; this crashes the worker on purpose.
            unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
        }
        let until = Instant::now() + Duration::from_micros(self.micros);
        let mut n = 0u64;
        while Instant::now() < until {
            n = black_box(n.wrapping_add(1));
        }
        Ok(n)
    }
}
procpool::register!(Busy);

/// The range of the CPU-bound kernel: about 0.4 s serial on this machine.
const PRIMES_END: u64 = 2_500_000;
const PRIMES_CHUNKS: u64 = 64;

fn main() -> Result<()> {
    procpool::init();
    procspawn::init();
    if cluster::serve_agent()? {
        return Ok(());
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let peer = args.first().map(String::as_str).unwrap_or("");
    let workload = args.get(1).map(String::as_str).unwrap_or("");
    let size: Option<u64> = args.get(2).map(|s| s.parse()).transpose()?;
    let size = |default: u64| size.unwrap_or(default);
    let report = |metric: &str, value: f64| println!("{workload}.{peer}.{metric} {value}");
    match (peer, workload) {
        ("raw", "rtt") => report("us", raw_pipe_rtt(size(20_000))?),
        ("raw", "echo") => raw_echo()?,
        ("raw", "memcpy") => report("gb_per_s", memcpy_gbps(64 << 20)),
        ("procpool" | "procpool-fork", _) => {
            let launch = if peer == "procpool" {
                Launch::CurrentExe
            } else {
                Launch::ForkServer
            };
            let builder = || {
                Pool::builder()
                    .workers(2)
                    .launch(launch.clone())
                    .stderr(OutputMode::Null)
                    .core_dumps(false)
            };
            procpool_workload(workload, builder, size, &report)?
        }
        ("procspawn", _) => procspawn_workload(workload, size, &report)?,
        ("cluster", _) => cluster::workload(workload, size, &|peer, metric, value| {
            println!("cluster.{peer}.{metric} {value}")
        })?,
        ("rayon", "cpu") => {
            let chunks = primes_chunks();
            let serial = time(|| chunks.iter().map(|&(a, b)| count(a, b)).sum::<u64>());
            let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
            let parallel = time(|| {
                use rayon::prelude::*;
                pool.install(|| chunks.par_iter().map(|&(a, b)| count(a, b)).sum::<u64>())
            });
            report("serial_s", serial);
            report("s", parallel);
        }
        _ => bail!(
            "usage: compare <procpool|procpool-fork|procspawn|rayon|raw|cluster> <workload> [size]"
        ),
    }
    Ok(())
}

fn count(a: u64, b: u64) -> u64 {
    procpool_worker::count_primes(a, b)
}

fn primes_chunks() -> Vec<(u64, u64)> {
    let step = PRIMES_END / PRIMES_CHUNKS;
    (0..PRIMES_CHUNKS)
        .map(|i| (i * step, (i + 1) * step))
        .collect()
}

/// Seconds `f` takes.
fn time<T>(f: impl FnOnce() -> T) -> f64 {
    let start = Instant::now();
    black_box(f());
    start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn procpool_workload(
    workload: &str,
    builder: impl Fn() -> PoolBuilder,
    size: impl Fn(u64) -> u64,
    report: &dyn Fn(&str, f64),
) -> Result<()> {
    match workload {
        "start" => {
            // Two workers ready and a first result: two tasks at once, both answered.
            let start = Instant::now();
            let pool = builder().build()?;
            let a = pool.submit(Inc(1)).map_err(|e| e.kind_error())?;
            let b = pool.submit(Inc(2)).map_err(|e| e.kind_error())?;
            a.wait()?;
            b.wait()?;
            report("ms", start.elapsed().as_secs_f64() * 1e3);
        }
        "tiny" => {
            let pool = warm(builder())?;
            let n = size(1_000_000);
            let start = Instant::now();
            let mut sum = 0u64;
            for out in pool.map((0..n).map(Inc)) {
                sum += out?;
            }
            let s = start.elapsed().as_secs_f64();
            anyhow::ensure!(sum == n * (n + 1) / 2, "wrong sum");
            report("items_per_s", n as f64 / s);
        }
        "rtt" => {
            let pool = warm(builder())?;
            let mut rtts = Vec::new();
            for i in 0..size(5_000) {
                let start = Instant::now();
                pool.submit(Inc(i)).map_err(|e| e.kind_error())?.wait()?;
                rtts.push(start.elapsed().as_secs_f64() * 1e6);
            }
            report("us", median(rtts));
        }
        "submit" => {
            let pool = warm(builder())?;
            let n = size(100_000);
            let start = Instant::now();
            let handles = (0..n)
                .map(|i| pool.submit(Inc(i)).map_err(|e| e.kind_error()))
                .collect::<Result<Vec<_>>>()?;
            for h in handles {
                h.wait()?;
            }
            report("tasks_per_s", n as f64 / start.elapsed().as_secs_f64());
        }
        "async" => {
            // The submit row's tasks and pool, submitted and awaited from one async task
            // (tokio's current-thread runtime, built before the clock starts).
            let pool = warm(builder())?;
            let n = size(100_000);
            let runtime = tokio::runtime::Builder::new_current_thread().build()?;
            let start = Instant::now();
            runtime.block_on(async {
                let mut handles = Vec::with_capacity(n as usize);
                for i in 0..n {
                    let handle = pool.submit_async(Inc(i)).await;
                    handles.push(handle.map_err(|e| e.kind_error())?);
                }
                for h in handles {
                    h.await?;
                }
                anyhow::Ok(())
            })?;
            report("tasks_per_s", n as f64 / start.elapsed().as_secs_f64());
        }
        "cpu" => {
            let pool = warm(builder())?;
            let chunks = primes_chunks();
            let s = time(|| {
                pool.map(chunks.iter().map(|&(a, b)| Primes(a, b)))
                    .map(Result::unwrap)
                    .sum::<u64>()
            });
            report("s", s);
        }
        "payload" => {
            // 64 MiB in and 64 MiB out as a `SharedSlice`, three ways (median of 3 each):
            // the array already in shared memory and scaled in place (`gb_per_s`, the
            // goal's figure: the serde row below also starts from a ready array); the
            // copy into shared memory timed too (`gb_per_s_copy_in`); and a new output
            // array made by the worker (`gb_per_s_new_out`).
            let pool = warm(builder())?;
            let data = vec![1.5f64; (64 << 20) / 8];
            let moved = 2.0 * (64u64 << 20) as f64;
            for (key, copy_timed, new_out) in [
                ("gb_per_s", false, false),
                ("gb_per_s_copy_in", true, false),
                ("gb_per_s_new_out", false, true),
            ] {
                let mut rounds = Vec::new();
                for _ in 0..3 {
                    let before = Instant::now();
                    let input = SharedSlice::from_slice(&data)?;
                    let start = if copy_timed { before } else { Instant::now() };
                    let task = ScaleShared { data: input, new_out };
                    let out = pool.submit(task).map_err(|e| e.kind_error())?.wait()?;
                    rounds.push(start.elapsed().as_secs_f64());
                    anyhow::ensure!(out.len() == data.len() && out[7] == 3.0, "wrong output");
                }
                report(key, moved / median(rounds) / 1e9);
            }
        }
        "payload_serde" => {
            let pool = warm(builder())?;
            let data = vec![1.5f64; (64 << 20) / 8];
            let mut rounds = Vec::new();
            for _ in 0..3 {
                let input = data.clone();
                let start = Instant::now();
                let out = pool
                    .submit(Scale(input))
                    .map_err(|e| e.kind_error())?
                    .wait()?;
                rounds.push(start.elapsed().as_secs_f64());
                anyhow::ensure!(out.len() == data.len() && out[7] == 3.0, "wrong output");
            }
            report(
                "gb_per_s",
                2.0 * (64u64 << 20) as f64 / median(rounds) / 1e9,
            );
        }
        "fresh" => {
            let pool = warm(builder().max_tasks_per_worker(1))?;
            let n = size(2_000);
            let start = Instant::now();
            for out in pool.map((0..n).map(Inc)) {
                out?;
            }
            report("tasks_per_s", n as f64 / start.elapsed().as_secs_f64());
        }
        "crash" => {
            let pool = warm(builder())?;
            let n = size(10_000);
            let run = |faulty: bool| {
                let tasks = (0..n).map(|i| Busy {
                    micros: 1_000,
                    segfault: faulty && i % 100 == 50,
                });
                let start = Instant::now();
                let crashed = pool.map(tasks).filter(Result::is_err).count();
                (n as f64 / start.elapsed().as_secs_f64(), crashed)
            };
            let (clean, none) = run(false);
            let (faulty, crashed) = run(true);
            anyhow::ensure!(none == 0 && crashed as u64 == n / 100, "wrong crash count");
            report("clean_tasks_per_s", clean);
            report("faulty_tasks_per_s", faulty);
        }
        "memory" => {
            let pool = warm(builder())?;
            let idle = rss_kib("VmRSS")?;
            let n = size(10_000_000);
            let mut sum = 0u64;
            for out in pool.map((0..n).map(Inc)) {
                sum = sum.wrapping_add(out?);
            }
            black_box(sum);
            let peak = rss_kib("VmHWM")?;
            report(
                "peak_over_idle_mib",
                (peak.saturating_sub(idle)) as f64 / 1024.0,
            );
        }
        other => bail!("unknown workload {other}"),
    }
    Ok(())
}

/// A pool whose two workers have started and answered once.
fn warm(builder: PoolBuilder) -> Result<Pool> {
    let pool = builder.build()?;
    for out in pool.map((0..4).map(Inc)) {
        out?;
    }
    Ok(pool)
}

trait KindError {
    fn kind_error(&self) -> anyhow::Error;
}

impl<T> KindError for procpool::SubmitError<T> {
    fn kind_error(&self) -> anyhow::Error {
        anyhow::anyhow!("submit refused: {self}")
    }
}

fn rss_kib(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .context("no such field")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("no value")?
        .parse()?)
}

fn procspawn_workload(
    workload: &str,
    size: impl Fn(u64) -> u64,
    report: &dyn Fn(&str, f64),
) -> Result<()> {
    match workload {
        "start" => {
            let start = Instant::now();
            let pool = procspawn::Pool::new(2)?;
            let a = pool.spawn(1u64, |x| x + 1);
            let b = pool.spawn(2u64, |x| x + 1);
            a.join()?;
            b.join()?;
            report("ms", start.elapsed().as_secs_f64() * 1e3);
        }
        // procspawn has no map: one spawn per item is its way to run many tasks.
        "tiny" | "submit" => {
            let pool = procspawn::Pool::new(2)?;
            pool.spawn(0u64, |x| x + 1).join()?;
            let n = size(20_000);
            let start = Instant::now();
            let handles: Vec<_> = (0..n).map(|i| pool.spawn(i, |x| x + 1)).collect();
            for h in handles {
                h.join()?;
            }
            report("tasks_per_s", n as f64 / start.elapsed().as_secs_f64());
        }
        "rtt" => {
            let pool = procspawn::Pool::new(2)?;
            pool.spawn(0u64, |x| x + 1).join()?;
            let mut rtts = Vec::new();
            for i in 0..size(2_000) {
                let start = Instant::now();
                pool.spawn(i, |x| x + 1).join()?;
                rtts.push(start.elapsed().as_secs_f64() * 1e6);
            }
            report("us", median(rtts));
        }
        other => bail!("unknown procspawn workload {other}"),
    }
    Ok(())
}

/// Median round trip of one byte between this process on CPU 0 and a child on CPU 1,
/// over two pipes.
fn raw_pipe_rtt(rounds: u64) -> Result<f64> {
    pin_to(0)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["raw", "echo"])
        .stdin(StdStdio::piped())
        .stdout(StdStdio::piped())
        .spawn()?;
    let mut to = child.stdin.take().context("stdin")?;
    let mut from = child.stdout.take().context("stdout")?;
    let mut byte = [0u8; 1];
    let mut rtts = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        let start = Instant::now();
        to.write_all(&byte)?;
        from.read_exact(&mut byte)?;
        rtts.push(start.elapsed().as_secs_f64() * 1e6);
    }
    drop(to);
    child.wait()?;
    Ok(median(rtts))
}

/// The other end of `raw_pipe_rtt`: echoes bytes from stdin to stdout, on CPU 1.
fn raw_echo() -> Result<()> {
    pin_to(1)?;
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut byte = [0u8; 1];
    while stdin.read_exact(&mut byte).is_ok() {
        stdout.write_all(&byte)?;
        stdout.flush()?;
    }
    Ok(())
}

fn pin_to(cpu: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
    Ok(())
}

/// memcpy bandwidth: bytes copied per second, median of five copies of `len` bytes.
fn memcpy_gbps(len: usize) -> f64 {
    let src = vec![7u8; len];
    let mut dst = vec![0u8; len];
    let rounds = (0..5)
        .map(|_| {
            let start = Instant::now();
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
            len as f64 / start.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    median(rounds)
}
