//! The cluster rows (`compare cluster <workload> [size]`): procpool's tasks over Redis
//! Streams, each measurement with its own `redis-server` on a unix socket and its
//! agents as processes (this binary re-executed in agent mode, see [`serve_agent`]).
//!
//! - `tiny`: a run of tiny tasks, all submitted then all collected, through two agents
//!   of one worker each (two agents on this machine of two cores); tasks per second
//!   (against Celery's, celery_peer.py), and how soon the idle agents served the new
//!   run's first tasks.
//! - `ms`: the same with tasks of about 1 ms of CPU; `local_ms` is the same tasks
//!   through a local pool of two workers, the rate the cluster's is held to.
//!   `ms_sleep` and `local_ms_sleep`: tasks that sleep 1 ms instead, so that the
//!   agent's, the server's and the submitter's CPU take nothing from the workers and
//!   only the pipeline's gaps show.
//! - `recovery`: one agent (lease 1 s, two workers) holds two tasks while a second
//!   agent runs idle; the first is SIGKILLed, and the clock runs from the kill until
//!   every task it held has its outcome from the second.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use procpool::{BoxError, Pool, PoolBuilder, Task};
use procpool_cluster::{Agent, Run};
use serde::{Deserialize, Serialize};

use crate::redis_server::{die_with_parent, RedisServer};
use crate::{warm, Busy, Inc};

/// Set in an agent process: the server's URL.
const AGENT_URL: &str = "PP_COMPARE_AGENT_URL";
/// Set in an agent process: its node name.
const AGENT_NODE: &str = "PP_COMPARE_AGENT_NODE";
/// Set in an agent process: its lease in milliseconds.
const AGENT_LEASE_MS: &str = "PP_COMPARE_AGENT_LEASE_MS";
/// Set in an agent process: how many workers its pool has.
const AGENT_WORKERS: &str = "PP_COMPARE_AGENT_WORKERS";
/// Set to print, on stderr, the server's commands per task of the throughput rows.
const STATS: &str = "PP_COMPARE_STATS";
/// Workers of the local pool, and of the agents together: this machine's cores.
const WORKERS: usize = 2;
/// The agents of the throughput rows.
const AGENTS: [&str; 2] = ["node-a", "node-b"];
/// The recovery row's lease.
const RECOVERY_LEASE: Duration = Duration::from_secs(1);
/// How long the recovery row's task runs on its first delivery.
const RECOVERY_STALL: Duration = Duration::from_secs(3);

/// Sleeps `millis` the first time it runs, returns at once on any later delivery: it
/// leaves `marker` behind when it starts. So the recovery row times the takeover, not a
/// second run of the whole task.
#[derive(Serialize, Deserialize)]
struct Stall {
    marker: PathBuf,
    millis: u64,
}

impl Task for Stall {
    const NAME: &'static str = "compare::Stall";
    type Output = bool;
    fn run(self) -> Result<bool, BoxError> {
        if self.marker.exists() {
            return Ok(false);
        }
        std::fs::write(&self.marker, b"started")?;
        std::thread::sleep(Duration::from_millis(self.millis));
        Ok(true)
    }
}
procpool::register!(Stall);

/// Sleeps `micros`.
#[derive(Serialize, Deserialize)]
struct Nap {
    micros: u64,
}

impl Task for Nap {
    const NAME: &'static str = "compare::Nap";
    type Output = ();
    fn run(self) -> Result<(), BoxError> {
        std::thread::sleep(Duration::from_micros(self.micros));
        Ok(())
    }
}
procpool::register!(Nap);

/// The pool every row uses: `workers` re-exec workers, stderr dropped, no core dumps.
fn pool_builder(workers: usize) -> PoolBuilder {
    Pool::builder()
        .workers(workers)
        .stderr(procpool::OutputMode::Null)
        .core_dumps(false)
}

/// Serves as an agent if this process was started as one (after `procpool::init`, so
/// the agent's own workers never get here); returns whether it was.
///
/// # Errors
/// The agent could not connect or stopped on an error.
pub(crate) fn serve_agent() -> Result<bool> {
    let Ok(url) = std::env::var(AGENT_URL) else {
        return Ok(false);
    };
    let node = std::env::var(AGENT_NODE).unwrap_or_else(|_| "agent".into());
    let lease = std::env::var(AGENT_LEASE_MS)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(procpool_cluster::DEFAULT_LEASE, Duration::from_millis);
    let workers = std::env::var(AGENT_WORKERS)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(WORKERS);
    let agent = Agent::builder(url)
        .node(node)
        .lease(lease)
        .patience(Duration::from_secs(10))
        .pool(pool_builder(workers))
        .build()?;
    agent.serve()?;
    Ok(true)
}

/// An agent process, SIGKILLed and reaped on drop.
struct AgentProcess {
    child: Option<Child>,
}

impl AgentProcess {
    fn start(url: &str, node: &str, lease: Duration, workers: usize) -> Result<AgentProcess> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .env(AGENT_URL, url)
            .env(AGENT_NODE, node)
            .env(AGENT_LEASE_MS, lease.as_millis().to_string())
            .env(AGENT_WORKERS, workers.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        die_with_parent(&mut command);
        let child = command.spawn().context("starting an agent")?;
        Ok(AgentProcess { child: Some(child) })
    }

    /// The agent's pid, while it runs.
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL and reap: a lost machine.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs one cluster workload; `report(peer, metric, value)` prints a row.
pub(crate) fn workload(
    workload: &str,
    size: impl Fn(u64) -> u64,
    report: &dyn Fn(&str, &str, f64),
) -> Result<()> {
    match workload {
        "tiny" => {
            let measured = through_agent(size(20_000), "tiny", Inc)?;
            report("procpool", "tiny_tasks_per_s", measured.rate);
            report(
                "procpool",
                "new_run_first_outcome_ms",
                measured.first_outcome_ms,
            );
        }
        "ms" => {
            let measured = through_agent(size(3_000), "ms", |_| busy_ms())?;
            report("procpool", "ms_tasks_per_s", measured.rate);
        }
        "local_ms" => {
            let rate = through_local_pool(size(3_000), |_| busy_ms())?;
            report("local", "ms_tasks_per_s", rate);
        }
        "ms_sleep" => {
            let measured = through_agent(size(3_000), "ms-sleep", |_| nap_ms())?;
            report("procpool", "ms_sleep_tasks_per_s", measured.rate);
        }
        "local_ms_sleep" => {
            let rate = through_local_pool(size(3_000), |_| nap_ms())?;
            report("local", "ms_sleep_tasks_per_s", rate);
        }
        "recovery" => {
            let seconds = recovery()?;
            report("procpool", "recovery_s", seconds);
            report("procpool", "recovery_lease_s", RECOVERY_LEASE.as_secs_f64());
        }
        other => bail!("unknown cluster workload {other}"),
    }
    Ok(())
}

/// About 1 ms of CPU.
fn busy_ms() -> Busy {
    Busy {
        micros: 1_000,
        segfault: false,
    }
}

/// A 1 ms sleep.
fn nap_ms() -> Nap {
    Nap { micros: 1_000 }
}

/// Tasks per second of `n` tasks made by `task` through `map` on a warm local pool of
/// two workers.
fn through_local_pool<T: Task>(n: u64, task: impl Fn(u64) -> T) -> Result<f64> {
    let pool = warm(pool_builder(WORKERS))?;
    let start = Instant::now();
    for out in pool.map((0..n).map(task)) {
        out?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// What a run through an agent measured.
struct Measured {
    /// Tasks per second, from the first submission of the timed tasks to their last
    /// outcome.
    rate: f64,
    /// Milliseconds from the first submission of a new run to its first outcome, with
    /// the agent idle and warm.
    first_outcome_ms: f64,
}

/// A run of `n` tasks made by `task`, all submitted then all collected, through two
/// agents of one worker each. A run of four first warms the agents; the timed run's first
/// four tasks (which time how soon a new run is served) are collected before its clock
/// starts, so that the rate is the agent's pace, not the time a new run takes to be
/// noticed.
fn through_agent<T: Task>(n: u64, name: &str, task: impl Fn(u64) -> T) -> Result<Measured> {
    let server = RedisServer::start()?;
    let url = server.url();
    let agents = AGENTS
        .iter()
        .map(|node| AgentProcess::start(&url, node, procpool_cluster::DEFAULT_LEASE, 1))
        .collect::<Result<Vec<_>>>()?;
    let mut warm_up = Run::<T>::builder(&url, format!("{name}-warm")).open()?;
    for i in 0..4 {
        warm_up.submit(&task(i))?;
    }
    for outcome in warm_up.outcomes() {
        outcome?.result?;
    }
    let mut run = Run::<T>::builder(&url, name).open()?;
    let opened = Instant::now();
    for i in 0..4 {
        run.submit(&task(i))?;
    }
    let mut first_outcome_ms = None;
    // `take` stops before the iterator sees the run collected: the run stays open.
    for outcome in run.outcomes().take(4) {
        outcome?.result?;
        first_outcome_ms.get_or_insert(opened.elapsed().as_secs_f64() * 1e3);
    }
    let first_outcome_ms = first_outcome_ms.context("no outcome for the first tasks")?;
    let processes = [
        ("submitter", Some(std::process::id())),
        ("redis-server", server.pid()),
        ("agent a+worker", agents[0].pid()),
        ("agent b+worker", agents[1].pid()),
    ];
    let cpu = |pid: Option<u32>| pid.map_or(0, |pid| cpu_ns(pid, pid != std::process::id()));
    let cpu_before = processes.map(|(_, pid)| cpu(pid));
    let start = Instant::now();
    for i in 4..n + 4 {
        run.submit(&task(i))?;
    }
    let mut collected = 0u64;
    for outcome in run.outcomes() {
        outcome?.result?;
        collected += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    ensure!(collected == n, "{collected} outcomes for {n} tasks");
    if std::env::var_os(STATS).is_some() {
        eprint!("{}", per_task(&server.command_stats()?, n + 8));
        for ((name, pid), before) in processes.iter().zip(cpu_before) {
            let used = cpu(*pid).saturating_sub(before);
            eprintln!(
                "{name:<13} {:>8.2} us/task of CPU",
                used as f64 / 1e3 / n as f64
            );
        }
    }
    Ok(Measured {
        rate: n as f64 / seconds,
        first_outcome_ms,
    })
}

/// Seconds from the SIGKILL of an agent holding two tasks to the last of their outcomes,
/// each run again by a second agent that was running, idle, before the kill.
fn recovery() -> Result<f64> {
    let server = RedisServer::start()?;
    let url = server.url();
    let markers: Vec<PathBuf> = (0..2)
        .map(|i| server.dir().join(format!("stall-{i}-started")))
        .collect();
    let mut first = AgentProcess::start(&url, "node-a", RECOVERY_LEASE, 2)?;
    let mut run = Run::<Stall>::builder(&url, "recovery").open()?;
    for marker in &markers {
        run.submit(&Stall {
            marker: marker.clone(),
            millis: RECOVERY_STALL.as_millis() as u64,
        })?;
    }
    run.flush()?;
    // Both tasks have started on the first agent's workers: it holds them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !markers.iter().all(|m| m.exists()) {
        ensure!(
            Instant::now() < deadline,
            "the first agent never started both tasks"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // The second agent, started and warm (its first task served) before the kill: the
    // first is full, so the warm-up task is the second's.
    let _second = AgentProcess::start(&url, "node-b", RECOVERY_LEASE, 2)?;
    let mut warm_up = Run::<Nap>::builder(&url, "recovery-warm").open()?;
    warm_up.submit(&Nap { micros: 1 })?;
    for outcome in warm_up.outcomes() {
        let outcome = outcome?;
        ensure!(
            outcome.node == "node-b",
            "the warm-up ran on {}",
            outcome.node
        );
    }
    let killed = Instant::now();
    first.kill9();
    for outcome in run.outcomes() {
        let outcome = outcome?;
        ensure!(
            outcome.node == "node-b" && matches!(outcome.result, Ok(false)),
            "the outcome came from {} ({:?}), not from the second agent's run",
            outcome.node,
            outcome.result
        );
    }
    Ok(killed.elapsed().as_secs_f64())
}

/// `INFO commandstats` as calls and server time per task, `tasks` tasks in all.
fn per_task(stats: &str, tasks: u64) -> String {
    let mut out = String::new();
    for line in stats.lines() {
        let Some((name, fields)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |key: &str| -> f64 {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
                .unwrap_or(0.0)
        };
        let (calls, usec) = (field("calls"), field("usec"));
        out += &format!(
            "{name:<12} {:>9.3} calls/task {:>8.2} us/task on the server\n",
            calls / tasks as f64,
            usec / tasks as f64
        );
    }
    out
}

/// CPU time used so far by process `pid`'s threads, and with `children` its children's
/// (the agent's workers), in nanoseconds, from `/proc/<pid>/task/*/schedstat`.
fn cpu_ns(pid: u32, children: bool) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut total = 0;
    for task in tasks.flatten() {
        let path = task.path();
        total += std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        if !children {
            continue;
        }
        let list = std::fs::read_to_string(path.join("children")).unwrap_or_default();
        for child in list.split_whitespace().filter_map(|c| c.parse().ok()) {
            total += cpu_ns(child, true);
        }
    }
    total
}
