//! The cluster mode on one machine: a Redis server, two node agents as processes of
//! their own (2 workers each, as two machines would run them), and a submitter that
//! sends a batch of 200 tasks with faults planted in it: a segfault, a crash that a
//! second delivery cures, a panic and a hang. Midway the submitter SIGKILLs one agent,
//! a machine lost, and the other takes over its tasks once their lease runs out. At the
//! end, the outcomes by kind and by node, the tasks delivered more than once and the
//! dead letters. Every task gets exactly one outcome and each planted fault ends as it
//! should, or the example exits with an error.
//!
//! Run it with `cargo run --release --example cluster`. It needs `redis-server` on the
//! `PATH` (`apt-get install redis-server`): it starts its own on a unix socket in a
//! fresh temporary directory, and stops it at the end. To use a server of yours, set
//! `REDIS_URL` (`redis://[:password@]host[:port][/db]`); keep to one that no
//! other agents serve, since an agent takes the tasks of every run on its server.

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use procpool::{Call, OutputMode, Pool, TaskError, TaskOptions};
use procpool_cluster::{Agent, Outcome, Run};
use serde::{Deserialize, Serialize};

/// The server to use instead of starting one.
const URL_VAR: &str = "REDIS_URL";
/// Set in the agents this example starts: the node's name.
const AGENT_VAR: &str = "PROCPOOL_EXAMPLE_AGENT";

const TASKS: u64 = 200;
const NODES: [&str; 2] = ["node-a", "node-b"];
/// The agent killed midway.
const LOST: &str = "node-b";
const WORKERS: usize = 2;
/// How long a lost agent's tasks wait before another agent takes them up.
const LEASE: Duration = Duration::from_secs(1);
/// What each task's work takes (a sleep, standing in for real work).
const WORK: Duration = Duration::from_millis(30);
/// The timeout the hanging task is submitted with.
const HANG_LIMIT: Duration = Duration::from_millis(500);
/// Past this, the example gives up (and fails) rather than wait on.
const DEADLINE: Duration = Duration::from_secs(60);

/// What a task does besides its work: the faults planted in the batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Fault {
    None,
    /// Kills its worker with SIGSEGV, on every delivery.
    Segfault,
    /// Aborts its worker the first time (it makes this marker file), works the next.
    CrashOnce(PathBuf),
    Panic,
    Hang,
}

/// The checksum of `n`, after `WORK` of waiting, unless `fault` strikes first.
#[procpool::task]
fn checksum(n: u64, fault: Fault) -> u64 {
    match fault {
        Fault::None => {}
        Fault::Segfault => {
            // Rust's runtime handles SIGSEGV to report stack overflows; for any other
            // it restores the default action and returns. So the first raise is
            // swallowed and the second kills the worker.
            let _ = signal::raise(Signal::SIGSEGV);
            let _ = signal::raise(Signal::SIGSEGV);
        }
        Fault::CrashOnce(marker) => {
            let first = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&marker)
                .is_ok();
            if first {
                std::process::abort();
            }
        }
        Fault::Panic => panic!("planted panic in task {n}"),
        Fault::Hang => loop {
            thread::park();
        },
    }
    thread::sleep(WORK);
    expected(n)
}

/// What `checksum` returns for `n`.
fn expected(n: u64) -> u64 {
    n.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
}

/// How many tasks have a fault planted: the first ones of the batch, so that each has
/// its outcome before the agent is killed and ends in exactly one way.
const PLANTED: u64 = 4;

/// The fault planted in task `seq`, if any.
fn planted(seq: u64, marker: &Path) -> Fault {
    match seq {
        0 => Fault::Segfault,
        1 => Fault::CrashOnce(marker.to_owned()),
        2 => Fault::Panic,
        3 => Fault::Hang,
        _ => Fault::None,
    }
}

fn main() -> anyhow::Result<()> {
    // First line of main: in a worker process this never returns. The agents' pools
    // start their workers by running this program again.
    procpool::init();
    match std::env::var(AGENT_VAR) {
        Ok(node) => agent(&node),
        Err(_) => submitter(),
    }
}

/// A node agent: what each machine of a cluster would run, here a process of its own.
fn agent(node: &str) -> anyhow::Result<()> {
    let url = std::env::var(URL_VAR).with_context(|| format!("an agent needs {URL_VAR}"))?;
    let agent = Agent::builder(url)
        .node(node)
        .lease(LEASE)
        .pool(
            Pool::builder()
                .workers(WORKERS)
                .core_dumps(false)
                // The planted crashes' messages stay out of the example's output; each
                // error still carries the last lines.
                .stderr(OutputMode::Null),
        )
        .build()?;
    // Until the submitter kills this process.
    agent.serve()?;
    Ok(())
}

/// Starts the server and the agents, submits the batch, kills an agent midway, and
/// reports and checks the outcomes.
fn submitter() -> anyhow::Result<()> {
    let started = Instant::now();
    // Dropped in reverse order: agents killed, then the server stopped, then the
    // directory removed, whether the example succeeds or fails.
    let scratch = Scratch::new()?;
    let server = match std::env::var(URL_VAR) {
        Ok(url) => Server::Theirs(url),
        Err(_) => Server::start(&scratch.0)?,
    };
    let url = server.url();
    let mut agents = Agents::start(&url)?;
    println!(
        "procpool cluster example: {TASKS} tasks ({PLANTED} with planted faults) on {} \
         node agents of {WORKERS} workers each, lease {LEASE:?}",
        NODES.len()
    );
    println!("server: {}", server.describe());
    println!("agents: {}", agents.describe());

    let run_id = format!("cluster-example-{}-{}", std::process::id(), unix_seconds());
    let mut run = Run::<Call<checksum>>::builder(&url, &run_id)
        .patience(Duration::from_secs(10))
        .expire_after(Duration::from_secs(600))
        .open()?;
    let marker = scratch.0.join("crashed-once");
    let submitted_at = Instant::now();
    for n in 0..TASKS {
        let fault = planted(n, &marker);
        let hangs = matches!(fault, Fault::Hang);
        let task = Call::new(checksum, (n, fault));
        let seq = match hangs {
            // Its own timeout travels with it to whichever agent runs it.
            true => run.submit_with(&task, &TaskOptions::new().timeout(HANG_LIMIT))?,
            false => run.submit(&task)?,
        };
        ensure!(seq == n, "task {n} was numbered {seq}");
    }
    run.flush()?;
    println!("submitted {TASKS} tasks to run {run_id}");

    // Outcomes are collected on a thread of their own, so that this one can kill an
    // agent midway and give up at the deadline.
    let (sender, outcomes) = mpsc::channel();
    let collector = thread::spawn(move || {
        for outcome in run.outcomes() {
            if sender.send(outcome).is_err() {
                break;
            }
        }
        run
    });
    // Each task's outcome, and whether it came after the kill.
    let mut got: BTreeMap<u64, (Outcome<u64>, bool)> = BTreeMap::new();
    let mut killed: Option<Instant> = None;
    let mut told_takeover = false;
    loop {
        let outcome = match outcomes.recv_timeout(Duration::from_millis(200)) {
            Ok(outcome) => outcome?,
            Err(RecvTimeoutError::Timeout) => {
                ensure!(
                    started.elapsed() < DEADLINE,
                    "gave up after {DEADLINE:?} with {} of {TASKS} outcomes",
                    got.len()
                );
                agents.check_alive()?;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let seq = outcome.seq;
        if killed.is_some() && outcome.attempts > 1 && seq >= PLANTED && !told_takeover {
            told_takeover = true;
            println!(
                "task {seq}, taken over by {} once its lease ran out, done {:.2} s after \
                 the kill",
                outcome.node,
                killed.map_or(0.0, |at| at.elapsed().as_secs_f64())
            );
        }
        let previous = got.insert(seq, (outcome, killed.is_some()));
        ensure!(previous.is_none(), "task {seq} had two outcomes");
        // Midway, once every planted fault has ended: a machine lost.
        let planted_done = (0..PLANTED).all(|seq| got.contains_key(&seq));
        if killed.is_none() && planted_done && got.len() as u64 >= TASKS / 2 {
            let pid = agents.kill(LOST)?;
            killed = Some(Instant::now());
            println!(
                "after {} outcomes: SIGKILL to {LOST} (pid {pid}), a machine lost; its \
                 tasks wait out their lease",
                got.len()
            );
        }
    }
    let batch_took = submitted_at.elapsed();
    let mut run = collector
        .join()
        .map_err(|_| anyhow!("the collecting thread panicked"))?;
    let dead = run.dead_letters()?;

    // What happened.
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_node: BTreeMap<&str, u64> = BTreeMap::new();
    for (outcome, _) in got.values() {
        let kind = match &outcome.result {
            Ok(_) => "ok".to_owned(),
            Err(error) => error.kind().name().replace('_', " "),
        };
        *by_kind.entry(kind).or_default() += 1;
        *by_node.entry(&outcome.node).or_default() += 1;
    }
    println!("\noutcome      tasks");
    for (kind, count) in &by_kind {
        println!("{kind:<12} {count:>5}");
    }
    println!("\nnode         tasks");
    for (node, count) in &by_node {
        println!("{node:<12} {count:>5}");
    }
    println!("\ndelivered more than once:");
    let again: Vec<&(Outcome<u64>, bool)> = got.values().filter(|(o, _)| o.attempts > 1).collect();
    for (outcome, after_kill) in &again {
        let ending = match &outcome.result {
            Ok(_) => "ok".to_owned(),
            Err(error) => error.to_string(),
        };
        let why = match outcome.seq {
            0 => " (the planted segfault)",
            1 => " (the planted crash, cured by the second delivery)",
            _ if *after_kill => " (taken over from the lost agent)",
            _ => "",
        };
        println!(
            "  task {:>3}: {} deliveries, last on {}: {ending}{why}",
            outcome.seq, outcome.attempts, outcome.node
        );
    }
    println!("dead letters:");
    for letter in &dead {
        let task = letter
            .seq
            .map_or("no task".to_owned(), |seq| format!("task {seq}"));
        println!(
            "  {task}, set aside by agent {}: {}",
            letter.agent, letter.reason
        );
    }
    let poisoned = got
        .values()
        .filter(|(o, _)| o.result.as_ref().is_err_and(TaskError::is_poisoned))
        .count();
    println!(
        "\nredelivered: {} tasks; poisoned: {poisoned} (on the dead letters: {})",
        again.len(),
        dead.len()
    );
    println!(
        "{TASKS} tasks, {} outcomes; {} duplicate outcomes dropped; {:.2} s from the \
         first submit to the last outcome, {:.2} s in all",
        got.len(),
        run.duplicates(),
        batch_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    // Whether it is what should have happened.
    ensure!(
        got.len() as u64 == TASKS && got.keys().copied().eq(0..TASKS),
        "{} outcomes for {TASKS} tasks",
        got.len()
    );
    ensure!(
        run.garbage().is_empty(),
        "garbage among the outcomes: {:?}",
        run.garbage()
    );
    for (outcome, _) in got.values().filter(|(o, _)| o.seq >= PLANTED) {
        ensure!(
            outcome.result == Ok(expected(outcome.seq)),
            "task {}: {:?}",
            outcome.seq,
            outcome.result
        );
    }
    let segfault = &got[&0].0;
    ensure!(
        segfault.attempts == 3
            && matches!(&segfault.result, Err(TaskError::Poisoned { attempts: 3, last_error })
                if last_error.signal() == Some(11)),
        "the segfault should end Poisoned after 3 deliveries: {segfault:?}"
    );
    ensure!(
        dead.len() == 1
            && dead[0].seq == Some(0)
            && dead[0].error.as_ref().is_some_and(TaskError::is_poisoned),
        "the segfault alone should be on the dead letters: {dead:?}"
    );
    let cured = &got[&1].0;
    ensure!(
        cured.result == Ok(expected(1)) && cured.attempts == 2 && marker.exists(),
        "the crash should be cured by the second delivery: {cured:?}"
    );
    let panicked = &got[&2].0;
    ensure!(
        panicked.attempts == 1
            && matches!(&panicked.result, Err(TaskError::Panicked { message, .. })
                if message.contains("planted")),
        "the panic should end the task on its first delivery: {panicked:?}"
    );
    let hung = &got[&3].0;
    ensure!(
        hung.attempts == 1
            && matches!(hung.result, Err(TaskError::TimedOut { after, .. }) if after == HANG_LIMIT),
        "the hang should time out after {HANG_LIMIT:?}, once: {hung:?}"
    );
    ensure!(killed.is_some(), "the run ended before {LOST} was killed");
    let taken_over = got
        .values()
        .filter(|(o, after_kill)| o.seq >= PLANTED && o.attempts > 1 && *after_kill)
        .count();
    ensure!(
        taken_over > 0,
        "no task of {LOST} was taken over after it was killed"
    );
    ensure!(
        NODES.iter().all(|node| by_node.contains_key(node)),
        "a node ran no task: {by_node:?}"
    );
    println!(
        "every task has one outcome, each planted fault ended as it should, and {taken_over} \
         task(s) of the lost agent were taken over"
    );
    Ok(())
}

/// The example's own temporary directory (the server's socket and log, the marker
/// file), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!(
            "procpool-cluster-{}-{}",
            std::process::id(),
            unix_seconds()
        ));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir_all(&self.0) {
            eprintln!("{} not removed: {error}", self.0.display());
        }
    }
}

/// The Redis server: one this example started (and stops on drop), or the user's.
enum Server {
    Ours { child: Child, socket: PathBuf },
    Theirs(String),
}

impl Server {
    /// Starts `redis-server` on a unix socket in `dir`, without persistence, and waits
    /// until it answers.
    fn start(dir: &Path) -> anyhow::Result<Server> {
        let socket = dir.join("redis.sock");
        // A unix socket's path holds at most 107 bytes.
        ensure!(
            socket.as_os_str().len() < 100,
            "{} is too long for a unix socket: set TMPDIR to a shorter directory",
            socket.display()
        );
        let log = dir.join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|error| match error.kind() {
                ErrorKind::NotFound => anyhow!(
                    "redis-server is not on PATH: install it (`apt-get install \
                     redis-server`), or set {URL_VAR} to a server of yours"
                ),
                _ => anyhow!(error).context("starting redis-server"),
            })?;
        let mut server = Server::Ours { child, socket };
        server.wait_ready(&log)?;
        Ok(server)
    }

    /// Waits until the server answers PING on its socket, for up to 10 s.
    fn wait_ready(&mut self, log: &Path) -> anyhow::Result<()> {
        let Server::Ours { child, socket } = self else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                let log = fs::read_to_string(log).unwrap_or_default();
                bail!("redis-server exited at start ({status}); its log:\n{log}");
            }
            if answers_ping(socket) {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "redis-server did not answer within 10 s"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The URL agents and the submitter connect to.
    fn url(&self) -> String {
        match self {
            Server::Ours { socket, .. } => {
                // The temporary directory may come from TMPDIR: percent-encode the rest.
                let mut url = "redis+unix://".to_owned();
                for &byte in socket.as_os_str().as_bytes() {
                    match byte {
                        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' => {
                            url.push(char::from(byte))
                        }
                        _ => url.push_str(&format!("%{byte:02X}")),
                    }
                }
                url
            }
            Server::Theirs(url) => url.clone(),
        }
    }

    /// The server in a few words (never the user's URL, which may hold a password).
    fn describe(&self) -> String {
        match self {
            Server::Ours { child, socket } => format!(
                "redis-server (pid {}) started for this run, on {}",
                child.id(),
                socket.display()
            ),
            Server::Theirs(_) => format!("the one at {URL_VAR}"),
        }
    }
}

impl Drop for Server {
    /// Stops a server this example started: SIGTERM by its pid, up to 5 s to exit,
    /// then SIGKILL; reaped either way.
    fn drop(&mut self) {
        let Server::Ours { child, .. } = self else {
            return;
        };
        let _ = signal::kill(pid_of(child), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Whether a server answers an inline PING on `socket`.
fn answers_ping(socket: &Path) -> bool {
    let ping = || -> std::io::Result<bool> {
        let mut stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        stream.write_all(b"PING\r\n")?;
        let mut reply = [0; 7];
        stream.read_exact(&mut reply)?;
        Ok(&reply == b"+PONG\r\n")
    };
    ping().unwrap_or(false)
}

/// The node agents, each this program run again as an agent; killed on drop.
struct Agents(Vec<(&'static str, Option<Child>)>);

impl Agents {
    fn start(url: &str) -> anyhow::Result<Agents> {
        let exe = std::env::current_exe().context("finding this program")?;
        let mut agents = Agents(Vec::new());
        for node in NODES {
            let child = Command::new(&exe)
                .env(AGENT_VAR, node)
                .env(URL_VAR, url)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .with_context(|| format!("starting agent {node}"))?;
            agents.0.push((node, Some(child)));
        }
        Ok(agents)
    }

    /// SIGKILLs the agent of `node` and reaps it; its pid.
    fn kill(&mut self, node: &str) -> anyhow::Result<u32> {
        let child = self
            .0
            .iter_mut()
            .find(|(name, _)| *name == node)
            .and_then(|(_, child)| child.take())
            .with_context(|| format!("no agent {node} running"))?;
        let (pid, mut child) = (child.id(), child);
        child.kill().with_context(|| format!("killing {node}"))?;
        child.wait().with_context(|| format!("reaping {node}"))?;
        Ok(pid)
    }

    /// Fails if an agent that was not killed has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        for (node, child) in &mut self.0 {
            if let Some(child) = child {
                if let Some(status) = child.try_wait()? {
                    bail!("agent {node} exited ({status})");
                }
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let agents: Vec<String> = self
            .0
            .iter()
            .filter_map(|(node, child)| {
                let child = child.as_ref()?;
                Some(format!("{node} (pid {})", child.id()))
            })
            .collect();
        agents.join(", ")
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn pid_of(child: &Child) -> Pid {
    // Linux pids fit in an i32 (at most 2^22).
    Pid::from_raw(child.id() as i32)
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
