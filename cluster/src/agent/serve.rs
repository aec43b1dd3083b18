//! [`Agent`]: a node's agent. A procpool [`Pool`] that takes tasks of every run on the
//! server, only as many as it has room for, keeps their leases alive while they run,
//! takes up tasks released by crashes or left by lost agents, and hands each outcome to
//! its writer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use procpool::{EncodedTask, Pool, PoolBuilder, TaskError, TaskOptions};
use redis::streams::{StreamId, StreamPendingId};
use redis::RedisResult;

use super::budget;
use super::forget;
use super::held::{Delivery, Held};
use super::lease;
use super::verdict;
use super::writer::{self, Write, Writer};
use crate::entry::TaskEntry;
use crate::error::ClusterError;
use crate::keys::{self, Keys, GROUP};
use crate::link::Link;
use crate::reply;

/// The default lease: how long a task stays with an agent that stopped renewing it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);
/// The default cap on deliveries of a task.
pub const DEFAULT_MAX_DELIVERIES: u32 = 3;
/// The default patience through a server outage.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(60);
/// How often the list of runs is read again.
const RUNS_EVERY: Duration = Duration::from_millis(500);
/// How many deliveries idle past an agent's lease but still within their owner's
/// longer one a look for lapsed deliveries reads past, at most.
const LOOK_PAST: usize = 64;
/// At most how long a released or lapsed task waits for an agent with room that looked
/// and found none (the bell calls an idle agent at once).
const RECLAIM_EVERY: Duration = Duration::from_millis(250);
/// The longest an idle agent blocks on the bell.
const IDLE_BLOCK: Duration = Duration::from_millis(500);

/// Settings of an [`Agent`]; see [`Agent::builder`].
#[derive(Debug)]
pub struct AgentBuilder {
    url: String,
    node: Option<String>,
    lease: Duration,
    patience: Duration,
    root_cert: Option<Vec<u8>>,
    pool: PoolBuilder,
}

impl AgentBuilder {
    /// The node's name in outcomes (default: the host name).
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// How long a task stays with this agent if it stops renewing its leases (it is
    /// renewed three times per lease while the agent lives); agents with a shorter
    /// lease wait this long too. Default 5 s; at least 100 ms.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(100));
        self
    }

    /// How long to keep reconnecting through a server outage before
    /// [`serve`](Agent::serve) gives up. Default 60 s.
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// For a `rediss://` server: trust this root certificate (PEM) rather than the
    /// system's roots.
    #[cfg(feature = "tls")]
    pub fn tls_root_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_cert = Some(pem.into());
        self
    }

    /// The local pool the tasks run in (its size, launch mode, memory limit…). Its
    /// retries are set to 0: a crash goes back to the server, where any agent may take
    /// the task up again.
    pub fn pool(mut self, pool: PoolBuilder) -> Self {
        self.pool = pool;
        self
    }

    /// Connects and starts the pool.
    ///
    /// # Errors
    /// The server out of reach for the whole patience, or the pool not built.
    pub fn build(self) -> Result<Agent, ClusterError> {
        let link = Link::open(&self.url, self.patience, self.root_cert.as_deref())?;
        let pool = self.pool.retries(0).build()?;
        let node = self.node.unwrap_or_else(host_name);
        let name = consumer_name(&node, self.lease);
        Ok(Agent {
            link,
            pool,
            node,
            name,
            lease: self.lease,
            runs: HashMap::new(),
            turn: 0,
            pool_lost: Arc::new(OnceLock::new()),
            reported: HashSet::new(),
            last_bell: "0-0".to_owned(),
        })
    }
}

/// A node agent: serves every run on the server with a local [`Pool`].
///
/// ```no_run
/// # fn main() -> Result<(), procpool_cluster::ClusterError> {
/// procpool::init();
/// let agent = procpool_cluster::Agent::builder("redis://127.0.0.1/").build()?;
/// agent.serve()?; // until the process ends
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Agent {
    link: Link,
    pool: Pool,
    node: String,
    /// Its consumer name: unique, never reused.
    name: String,
    lease: Duration,
    runs: HashMap<String, RunState>,
    /// Whose turn it is to be looked at first, among the runs served.
    turn: usize,
    /// Why the local pool can run nothing more, once it cannot: the agent stops then.
    pool_lost: Arc<OnceLock<TaskError>>,
    /// The runs listed whose keys the server refused a command on, reported once.
    reported: HashSet<String>,
    last_bell: String,
}

/// What the agent knows of a run it serves.
#[derive(Debug)]
struct RunState {
    keys: Arc<Keys>,
    cap: u32,
}

/// What a refused command on one run's keys says of that run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunFault {
    /// Its stream or group is gone (collected and expired, or lost by the server).
    Gone,
    /// Its keys hold something else than a run's (`WRONGTYPE`), or a reply on them does
    /// not read as the command's: skipped, the other runs served.
    Garbled,
}

/// What `error`, from a command on one run's keys, says of that run; `None` when it
/// says nothing of the run (the server out of reach, read-only, out of memory, a
/// command not allowed), which stops the agent.
fn run_fault(error: &ClusterError) -> Option<RunFault> {
    match error {
        ClusterError::Redis { source, .. } => match source.code() {
            Some("NOGROUP") => Some(RunFault::Gone),
            Some("WRONGTYPE") => Some(RunFault::Garbled),
            // A reply that does not read as the command's (a consumer's name or a
            // setting that is not UTF-8, written by whoever can write the run's keys).
            _ if matches!(
                source.kind(),
                redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType
            ) =>
            {
                Some(RunFault::Garbled)
            }
            _ => None,
        },
        _ => None,
    }
}

impl Agent {
    /// An agent for the server at `url` (`redis://[:password@]host[:port][/db]`,
    /// `rediss://` for TLS where the client was built with it, `redis+unix:///path`).
    pub fn builder(url: impl Into<String>) -> AgentBuilder {
        AgentBuilder {
            url: url.into(),
            node: None,
            lease: DEFAULT_LEASE,
            patience: DEFAULT_PATIENCE,
            root_cert: None,
            pool: Pool::builder(),
        }
    }

    /// The agent's consumer name: its node, process id, start time and lease, unique.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Serves until the server stays out of reach past the patience, or the local pool
    /// can no longer start workers. A run whose keys hold something else than a run's
    /// (the server says `WRONGTYPE`) is skipped and reported on stderr; the others are
    /// served.
    ///
    /// # Errors
    /// The server unreachable for the whole patience, a command refused for another
    /// reason than a run's garbled keys, or [`ClusterError::NoWorkers`]: the tasks
    /// held are released for other agents (each release counts a delivery), and no
    /// more are taken.
    pub fn serve(self) -> Result<(), ClusterError> {
        self.serve_until(&AtomicBool::new(false))
    }

    /// Serves until `stop` is set, then lets the tasks held finish, their leases
    /// renewed meanwhile, and writes their outcomes.
    ///
    /// # Errors
    /// As for [`serve`](Agent::serve).
    pub fn serve_until(mut self, stop: &AtomicBool) -> Result<(), ClusterError> {
        let held = Arc::new(Held::default());
        let (writes, to_write) = mpsc::channel();
        let writer = Writer {
            agent: self.name.clone(),
            node: self.node.clone(),
        };
        let writer_link = self.link.another()?;
        let writer_held = held.clone();
        let writer_thread = thread::Builder::new()
            .name("procpool-agent-writer".into())
            .spawn(move || writer.run(writer_link, to_write, writer_held))
            .map_err(ClusterError::Thread)?;
        let result = self
            .serve_loop(stop, &held, &writes)
            .and_then(|()| self.drain(&held));
        drop(writes);
        self.pool.join();
        let _ = writer_thread.join();
        result
    }

    fn serve_loop(
        &mut self,
        stop: &AtomicBool,
        held: &Arc<Held>,
        writes: &Sender<Write>,
    ) -> Result<(), ClusterError> {
        let workers = self.pool.workers();
        let renew_every = self.lease / 3;
        let mut next_runs = Instant::now();
        let mut next_renew = Instant::now() + renew_every;
        let mut next_reclaim = Instant::now();
        let mut next_forget = Instant::now() + forget::silence(self.lease) / 2;
        self.last_bell = self.link.run("reading the bell", last_bell)?;
        while !stop.load(Ordering::Relaxed) {
            if let Some(error) = self.pool_lost.get() {
                return Err(ClusterError::NoWorkers(error.clone()));
            }
            let now = Instant::now();
            if now >= next_runs {
                self.read_runs()?;
                next_runs = now + RUNS_EVERY;
            }
            if now >= next_renew {
                self.renew(held)?;
                next_renew = now + renew_every;
            }
            if now >= next_forget {
                self.forget_gone_agents()?;
                next_forget = now + forget::silence(self.lease) / 2;
            }
            let mut free = budget::free(workers, held.len(), held.rate());
            let mut taken = 0;
            if free > 0 && now >= next_reclaim {
                let reclaimed = self.reclaim(free, held, writes)?;
                // Taken up to the room there was: more may be waiting, released or
                // lapsed, and they go before any new task, at the next free place.
                // Otherwise none is left: look again a while later, or when the bell
                // rings.
                if reclaimed < free {
                    next_reclaim = now + renew_every.min(RECLAIM_EVERY);
                }
                taken += reclaimed;
                free = free.saturating_sub(reclaimed);
            }
            if free > 0 {
                taken += self.fetch(free, held, writes)?;
            }
            if taken > 0 {
                continue;
            }
            let wait = next_renew.saturating_duration_since(Instant::now());
            if budget::free(workers, held.len(), held.rate()) > 0 {
                match self.wait_for_bell(wait.min(IDLE_BLOCK))? {
                    Bell::Silent => {}
                    // A release rings too: look for it now.
                    Bell::Rang => next_reclaim = Instant::now(),
                    // A run this agent does not serve yet: read the runs now rather
                    // than at the next look.
                    Bell::NewRun => {
                        next_reclaim = Instant::now();
                        next_runs = Instant::now();
                    }
                }
            } else {
                let room = held.len();
                held.wait_below(room, wait.min(IDLE_BLOCK));
            }
        }
        Ok(())
    }

    /// Once stopped: renews the leases of the deliveries held until each is written
    /// back, so that no other agent takes up a task this one still runs.
    fn drain(&mut self, held: &Held) -> Result<(), ClusterError> {
        let renew_every = self.lease / 3;
        let mut next_renew = Instant::now();
        while held.len() > 0 {
            if Instant::now() >= next_renew {
                self.renew(held)?;
                next_renew = Instant::now() + renew_every;
            }
            held.wait_below(1, next_renew.saturating_duration_since(Instant::now()));
        }
        Ok(())
    }

    /// Reads the runs on the server, and the settings of new ones.
    fn read_runs(&mut self) -> Result<(), ClusterError> {
        let runs: Vec<Vec<u8>> = self.link.run("reading the runs", |c| {
            redis::cmd("SMEMBERS").arg(keys::RUNS).query(c)
        })?;
        // Read lossily: a name that is not UTF-8 is no valid run id, and skipped.
        let runs: Vec<String> = runs
            .iter()
            .map(|run| String::from_utf8_lossy(run).into_owned())
            .collect();
        self.runs.retain(|run, _| runs.contains(run));
        self.reported.retain(|run| runs.contains(run));
        for run in runs {
            if self.runs.contains_key(&run) || !keys::is_valid_run_id(&run) {
                continue;
            }
            let keys = Keys::of(&run);
            let cap = self.link.run("reading a run's settings", |c| {
                redis::cmd("HGET")
                    .arg(&keys.meta)
                    .arg("cap")
                    .query::<Option<String>>(c)
            });
            let (cap, refused) = match cap {
                Ok(cap) => (cap, None),
                Err(error) if run_fault(&error).is_some() => (None, Some(error)),
                Err(error) => return Err(error),
            };
            let cap = cap
                .and_then(|cap| cap.parse().ok())
                .filter(|&cap| cap > 0)
                .unwrap_or(DEFAULT_MAX_DELIVERIES);
            self.runs.insert(
                run.clone(),
                RunState {
                    keys: Arc::new(keys),
                    cap,
                },
            );
            if let Some(error) = refused {
                self.report(&run, &error);
            }
        }
        Ok(())
    }

    /// The runs served, with their caps, from a different one each time: a run of
    /// many tasks does not keep the others waiting until it is through.
    fn served(&mut self) -> Vec<(Arc<Keys>, u32)> {
        let mut runs: Vec<_> = self
            .runs
            .values()
            .map(|r| (r.keys.clone(), r.cap))
            .collect();
        runs.sort_by(|a, b| a.0.run.cmp(&b.0.run));
        if let Some(first) = self.turn.checked_rem(runs.len()) {
            runs.rotate_left(first);
        }
        self.turn = self.turn.wrapping_add(1);
        runs
    }

    /// Reports, once per run, a command on the run's keys that the server refused for
    /// what they hold.
    fn report(&mut self, run: &str, error: &ClusterError) {
        if self.reported.insert(run.to_owned()) {
            let cause = std::error::Error::source(error)
                .map(|source| format!(": {source}"))
                .unwrap_or_default();
            eprintln!(
                "procpool-cluster agent {}: run {run:?} skipped, {error}{cause}",
                self.name
            );
        }
    }

    /// Renews the leases of the deliveries held: those still this agent's on the
    /// server have their idle time reset (see `lease`). One taken over by another
    /// agent meanwhile is not claimed back.
    fn renew(&mut self, held: &Held) -> Result<(), ClusterError> {
        for (keys, entries) in held.by_run().into_values() {
            let name = self.name.clone();
            let renewed = self.link.run("renewing leases", |c| {
                lease::keep(&keys, &name, 0, &entries).query::<u64>(c)
            });
            // A run gone or garbled holds no lease to renew: its tasks run on, and
            // their outcomes are written as if it were there.
            match renewed {
                Ok(_) => {}
                Err(error) => match run_fault(&error) {
                    Some(RunFault::Gone) => {}
                    Some(RunFault::Garbled) => self.report(&keys.run, &error),
                    None => return Err(error),
                },
            }
        }
        Ok(())
    }

    /// Drops from each run's group the consumers of agents long gone (see `forget`).
    fn forget_gone_agents(&mut self) -> Result<(), ClusterError> {
        for (keys, _) in self.served() {
            let consumers = self.link.run("listing a run's agents", |c| {
                redis::cmd("XINFO")
                    .arg("CONSUMERS")
                    .arg(&keys.tasks)
                    .arg(GROUP)
                    .query::<redis::streams::StreamInfoConsumersReply>(c)
            });
            let consumers = match consumers {
                Ok(reply) => reply.consumers,
                Err(error) if run_fault(&error).is_some() => continue,
                Err(error) => return Err(error),
            };
            for consumer in consumers {
                let idle = Duration::from_millis(consumer.idle as u64);
                if consumer.name == self.name
                    || !forget::is_forgotten(consumer.pending, idle, self.lease)
                {
                    continue;
                }
                let forgotten = self.link.run("forgetting a gone agent", |c| {
                    forget::forget(&keys, &consumer.name).query::<i64>(c)
                });
                match forgotten {
                    Ok(_) => {}
                    Err(error) if run_fault(&error).is_some() => break,
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(())
    }

    /// Takes up to `free` tasks whose lease ran out (their agent lost) or that were
    /// released after a crash; returns how many.
    fn reclaim(
        &mut self,
        free: usize,
        held: &Arc<Held>,
        writes: &Sender<Write>,
    ) -> Result<usize, ClusterError> {
        let lease_ms = self.lease.as_millis() as u64;
        let mut taken = 0;
        let runs = self.served();
        for (keys, cap) in runs {
            if taken >= free {
                break;
            }
            let name = self.name.clone();
            // Those idle past this agent's lease, of which those idle past their
            // owner's too; looking past a few still within a longer lease. Never one
            // this agent holds: its lease lapsed while the agent was held up, and it
            // runs still (or its release is being written); renewing is what it needs,
            // not a second run beside the first.
            let stale = match self.link.run("listing lapsed leases", |c| {
                lapsed(c, &keys, lease_ms, free - taken + LOOK_PAST)
            }) {
                Ok(stale) => stale
                    .into_iter()
                    .filter(|p| {
                        let idle = Duration::from_millis(p.last_delivered_ms as u64);
                        lease::is_lapsed(idle, &p.consumer, self.lease)
                            && !held.contains(&keys.run, &p.id)
                    })
                    .take(free - taken)
                    .collect::<Vec<_>>(),
                Err(error) if run_fault(&error).is_some() => {
                    self.report(&keys.run, &error);
                    continue;
                }
                Err(error) => return Err(error),
            };
            if stale.is_empty() {
                continue;
            }
            let ids: Vec<&String> = stale.iter().map(|p| &p.id).collect();
            // Claims only those still idle past the lease: a renewal or another agent
            // that came first wins. Each claim counts a delivery.
            let claimed = self.link.run("taking over lapsed tasks", |c| {
                let reply: redis::Value = redis::cmd("XCLAIM")
                    .arg(&keys.tasks)
                    .arg(GROUP)
                    .arg(&name)
                    .arg(lease_ms)
                    .arg(&ids)
                    .query(c)?;
                reply::entries(reply)
            });
            let claimed: Vec<StreamId> = match claimed {
                Ok(claimed) => claimed,
                Err(error) if run_fault(&error).is_some() => {
                    self.report(&keys.run, &error);
                    continue;
                }
                Err(error) => return Err(error),
            };
            for entry in claimed {
                let Some(before) = stale.iter().find(|p| p.id == entry.id) else {
                    continue;
                };
                let deliveries = u32::try_from(before.times_delivered + 1).unwrap_or(u32::MAX);
                // The reason the last delivery ended: the breakdown its agent recorded
                // if it recorded one for that delivery, else that agent was lost. The
                // delivery is claimed already: a record that cannot be read is none.
                let recorded = self.link.run("reading a task's last breakdown", |c| {
                    match seq_of(&entry) {
                        Some(seq) => writer::last_breakdown(c, &keys, seq),
                        None => Ok(None),
                    }
                });
                let recorded = match recorded {
                    Ok(recorded) => recorded,
                    Err(error) if run_fault(&error).is_some() => None,
                    Err(error) => return Err(error),
                };
                let last_error = verdict::last_error(recorded, deliveries, &before.consumer);
                let poisoned = verdict::before_run(deliveries, cap, last_error);
                self.start(&keys, cap, entry, deliveries, poisoned, held, writes);
                taken += 1;
            }
        }
        Ok(taken)
    }

    /// Reads up to `free` new tasks from the runs; returns how many.
    fn fetch(
        &mut self,
        free: usize,
        held: &Arc<Held>,
        writes: &Sender<Write>,
    ) -> Result<usize, ClusterError> {
        let mut taken = 0;
        let runs = self.served();
        let mut gone = Vec::new();
        for (keys, cap) in runs {
            if taken >= free {
                break;
            }
            let name = self.name.clone();
            let count = free - taken;
            let reply = self.link.run("reading new tasks", |c| {
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(&name)
                    .arg("COUNT")
                    .arg(count)
                    .arg("STREAMS")
                    .arg(&keys.tasks)
                    .arg(">")
                    .query::<redis::Value>(c)
                    .and_then(reply::read)
            });
            let reply = match reply {
                Ok(reply) => reply,
                Err(error) => match run_fault(&error) {
                    Some(RunFault::Gone) => {
                        gone.push(keys.run.clone());
                        continue;
                    }
                    Some(RunFault::Garbled) => {
                        self.report(&keys.run, &error);
                        continue;
                    }
                    None => return Err(error),
                },
            };
            for stream in reply.map(|r| r.keys).unwrap_or_default() {
                for entry in stream.ids {
                    self.start(&keys, cap, entry, 1, None, held, writes);
                    taken += 1;
                }
            }
        }
        for run in gone {
            self.runs.remove(&run);
        }
        Ok(taken)
    }

    /// Starts one delivery: runs it on the pool (its outcome goes to the writer), or
    /// hands the writer its poisoning or its malformed entry.
    #[expect(
        clippy::too_many_arguments,
        reason = "one delivery's parts, each from a different step of the loop"
    )]
    fn start(
        &self,
        keys: &Arc<Keys>,
        cap: u32,
        entry: StreamId,
        deliveries: u32,
        poisoned: Option<TaskError>,
        held: &Arc<Held>,
        writes: &Sender<Write>,
    ) {
        let parsed = TaskEntry::parse(&entry.map);
        let seq = match &parsed {
            Ok(task) => Some(task.seq),
            Err(malformed) => malformed.seq,
        };
        let delivery = Delivery {
            keys: keys.clone(),
            entry: entry.id.clone(),
            seq: seq.unwrap_or(u64::MAX),
            deliveries,
        };
        held.insert(delivery.clone());
        let task = match parsed {
            Ok(task) => task,
            Err(malformed) => {
                let _ = writes.send(Write::Malformed {
                    keys: keys.clone(),
                    entry: entry.id,
                    seq: malformed.seq,
                    reason: malformed.reason,
                });
                return;
            }
        };
        if let Some(error) = poisoned {
            // This delivery runs nothing: the outcome counts the ones that ran.
            let delivery = Delivery {
                deliveries: deliveries - 1,
                ..delivery
            };
            let _ = writes.send(Write::Poisoned { delivery, error });
            return;
        }
        // A crash is a delivery, counted on the server and tried again on any agent: never
        // rerun here, whatever retries the task's own options ask for.
        let no_retries = TaskOptions::new().retries(0);
        let options = match task.timeout {
            None => no_retries,
            Some(None) => no_retries.no_timeout(),
            Some(Some(limit)) => no_retries.timeout(limit),
        };
        let writes = writes.clone();
        let to_run: EncodedTask = task.task;
        let pool_lost = self.pool_lost.clone();
        // A pool that cannot run the task is the agent's fault, not the task's: the
        // delivery is released (see `verdict`) and the agent stops before it takes
        // and releases every task of every run, up to their caps.
        let outcome = move |outcome: Result<Vec<u8>, TaskError>| {
            if let Err(error) = &outcome {
                if verdict::is_pool_lost(error) {
                    let _ = pool_lost.set(error.clone());
                }
            }
            let _ = writes.send(Write::Outcome {
                delivery,
                outcome,
                cap,
            });
        };
        match self.pool.submit_encoded(to_run, &options) {
            Ok(handle) => handle.on_complete(outcome),
            Err(refused) => outcome(Err(TaskError::from(refused))),
        }
    }

    /// Blocks on the bell up to `wait`; whether it rang, and for a run not served yet.
    fn wait_for_bell(&mut self, wait: Duration) -> Result<Bell, ClusterError> {
        let after = self.last_bell.clone();
        let millis = wait.as_millis().max(1) as u64;
        let reply = self.link.run_blocking("waiting for work", wait, |c| {
            redis::cmd("XREAD")
                .arg("BLOCK")
                .arg(millis)
                .arg("STREAMS")
                .arg(keys::BELL)
                .arg(&after)
                .query::<redis::Value>(c)
                .and_then(reply::read)
        })?;
        let rings = reply
            .and_then(|r| r.keys.into_iter().next())
            .map(|k| k.ids)
            .unwrap_or_default();
        let Some(last) = rings.last() else {
            return Ok(Bell::Silent);
        };
        self.last_bell = last.id.clone();
        let new_run = rings.iter().any(|ring| {
            crate::entry::bytes(&ring.map, "run")
                .ok()
                .and_then(|run| std::str::from_utf8(run).ok())
                .is_some_and(|run| !self.runs.contains_key(run))
        });
        Ok(if new_run { Bell::NewRun } else { Bell::Rang })
    }
}

/// What waiting on the bell brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bell {
    /// Nothing rang.
    Silent,
    /// There is work in a run served.
    Rang,
    /// There is work in a run not served yet.
    NewRun,
}

/// The task number an entry gives, if it gives one.
fn seq_of(entry: &StreamId) -> Option<u64> {
    crate::entry::number(&entry.map, "seq").ok()
}

/// The id of the newest ring of the bell, or `0-0`.
fn last_bell(connection: &mut redis::Connection) -> RedisResult<String> {
    let reply: redis::Value = redis::cmd("XREVRANGE")
        .arg(keys::BELL)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(connection)?;
    Ok(reply::entries(reply)?
        .into_iter()
        .next()
        .map(|id| id.id)
        .unwrap_or_else(|| "0-0".to_owned()))
}

/// The pending deliveries of a run idle at least `idle` milliseconds, up to `count`.
fn lapsed(
    connection: &mut redis::Connection,
    keys: &Keys,
    idle: u64,
    count: usize,
) -> RedisResult<Vec<StreamPendingId>> {
    let reply: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(&keys.tasks)
        .arg(GROUP)
        .arg("IDLE")
        .arg(idle)
        .arg("-")
        .arg("+")
        .arg(count)
        .query(connection)?;
    Ok(reply.ids)
}

/// The name of this machine, for outcomes.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A consumer name nobody used before: node, process id, start time in nanoseconds, a
/// counter within the process, and the agent's lease (see `lease`).
fn consumer_name(node: &str, lease: Duration) -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let count = COUNT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{node}/{}/{nanos:x}/{count}{}",
        std::process::id(),
        lease::name_tag(lease)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    /// The error the server gives as `reply` (a RESP error line).
    fn refused(reply: &str) -> ClusterError {
        let source = redis::parse_redis_value(reply.as_bytes())
            .and_then(Value::extract_error)
            .expect_err("an error reply");
        ClusterError::Redis {
            during: "testing",
            source,
        }
    }

    #[test]
    fn a_refusal_on_one_run_s_keys_is_that_run_s_fault_and_an_outage_is_not() {
        assert_eq!(
            run_fault(&refused(
                "-NOGROUP No such key 'k' or consumer group 'agents'\r\n"
            )),
            Some(RunFault::Gone)
        );
        assert_eq!(
            run_fault(&refused(
                "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
            )),
            Some(RunFault::Garbled)
        );
        // Nothing to do with the run: every run would be refused alike.
        for other in [
            "-READONLY You can't write against a read only replica.\r\n",
            "-NOPERM this user has no permissions\r\n",
            "-ERR syntax error\r\n",
        ] {
            assert_eq!(run_fault(&refused(other)), None, "{other}");
        }
        let outage = ClusterError::Unreachable {
            during: "testing",
            waited: Duration::from_secs(1),
            source: redis::RedisError::from(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            )),
        };
        assert_eq!(run_fault(&outage), None);
    }

    #[test]
    fn a_reply_that_does_not_read_as_the_command_s_is_that_run_s_fault() {
        let names: Result<Vec<String>, _> =
            redis::from_redis_value(Value::Array(vec![Value::BulkString(vec![0xff, 0xfe])]));
        let source = names.expect_err("bytes that are not UTF-8 are no String");
        let error = ClusterError::Redis {
            during: "testing",
            source: source.into(),
        };
        assert_eq!(run_fault(&error), Some(RunFault::Garbled));
    }
}
