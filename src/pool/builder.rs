//! [`PoolBuilder`]: every setting of a pool, checked once at `build`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::api::Pool;
use super::config::Config;
use crate::error::BuildError;
use crate::launch::exec::SpawnSettings;
use crate::launch::Launch;
use crate::output::mode::OutputMode;
use crate::slot::event::{Event, Events};
use crate::wire::codec;
use crate::wire::env;

/// The longest `start_timeout` or `kill_grace` a pool takes.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// The smallest memory limit a worker can run under: its own code, stacks and buffers
/// take a few MiB.
const MIN_MEMORY: u64 = 16 << 20;

impl Pool {
    /// A builder with the defaults.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    /// A pool with the defaults: one worker per CPU, re-executing the current program.
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub fn new() -> Result<Pool, BuildError> {
        PoolBuilder::new().build()
    }
}

/// Configures and starts a [`Pool`].
///
/// ```no_run
/// use std::time::Duration;
/// let pool = procpool::Pool::builder()
///     .workers(4)
///     .timeout(Duration::from_secs(30))
///     .retries(1)
///     .build()?;
/// # Ok::<(), procpool::BuildError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .build()"]
pub struct PoolBuilder {
    config: Config,
    /// Set by [`workers`](Self::workers); the CPUs are counted at `build` only
    /// without it (counting reads several files under `/proc` and `/sys`).
    workers: Option<usize>,
    spawn: SpawnSettings,
    context_error: Option<String>,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            config: Config {
                // Counted at `build`, unless set.
                workers: 0,
                timeout: None,
                max_tasks_per_worker: None,
                max_memory: None,
                retries: 0,
                max_in_flight: usize::MAX,
                context: None,
                start_timeout: Duration::from_secs(10),
                kill_grace: Duration::from_millis(500),
                core_dumps: true,
                max_start_failures: 3,
                registry_here: true,
                events: Events::default(),
                launch: Launch::default(),
            },
            spawn: SpawnSettings::default(),
            workers: None,
            context_error: None,
        }
    }
}

impl PoolBuilder {
    /// A builder with the defaults: one worker per CPU, current-executable launch, no
    /// timeout, no limits, no retries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of worker processes (default: the number of CPUs).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Where workers come from (default: [`Launch::CurrentExe`]).
    pub fn launch(mut self, launch: Launch) -> Self {
        self.spawn.launch = launch;
        self
    }

    /// Longest a single task may run; past it the worker is stopped (SIGTERM, then
    /// SIGKILL after the [grace period](Self::kill_grace)), the task ends in
    /// [`TaskError::TimedOut`](crate::TaskError::TimedOut) and the worker is replaced.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(timeout);
        self
    }

    /// Replace each worker after it has run `n` tasks (a fresh process per task with 1).
    pub fn max_tasks_per_worker(mut self, n: u64) -> Self {
        self.config.max_tasks_per_worker = Some(n);
        self
    }

    /// Memory limit per worker, in bytes. A worker whose resident size passes it while
    /// running a task is killed and the task ends in
    /// [`TaskError::MemoryLimit`](crate::TaskError::MemoryLimit); one found over it
    /// between tasks is replaced. The worker's data segment is also capped at this size,
    /// so a fast allocation bomb fails inside the worker. At least 16 MiB: below that a
    /// worker cannot even start reliably.
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.config.max_memory = Some(bytes);
        self
    }

    /// How many times a task whose worker crashed (signal, exit, broken protocol) is run
    /// again on a fresh worker before its error is reported (default 0).
    pub fn retries(mut self, n: u32) -> Self {
        self.config.retries = n;
        self
    }

    /// Most tasks submitted and not yet finished; `submit` blocks and `try_submit`
    /// refuses beyond it (default: unlimited; `map` keeps its own small window).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.config.max_in_flight = n;
        self
    }

    /// Sets an environment variable for workers.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.spawn.env.push((key.into(), Some(value.into())));
        self
    }

    /// Removes an environment variable from workers' environment.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.spawn.env.push((key.into(), None));
        self
    }

    /// Working directory of workers (default: the parent's).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spawn.cwd = Some(dir.into());
        self
    }

    /// What becomes of workers' stdout (default: inherited, as written);
    /// [`OutputMode::Prefixed`] prefixes each line with whose it is, and
    /// [`OutputMode::capture`] hands it to a function line by line.
    pub fn stdout(mut self, mode: OutputMode) -> Self {
        self.spawn.stdout = mode;
        self
    }

    /// What becomes of workers' stderr (default: copied to the parent's stderr, each
    /// line behind `[worker <pid> <task name>] `, see [`OutputMode::Prefixed`]);
    /// [`OutputMode::Raw`] copies it as written, [`OutputMode::capture`] hands it to a
    /// function line by line. Crash reports keep the last lines as written either way.
    pub fn stderr(mut self, mode: OutputMode) -> Self {
        self.spawn.stderr = mode;
        self
    }

    /// A value sent once to each worker when it starts (large read-only data, say),
    /// read inside tasks with [`procpool::context`](crate::context).
    pub fn context<C: Serialize>(mut self, value: &C) -> Self {
        let mut bytes = Vec::new();
        match codec::encode_into(value, &mut bytes) {
            Ok(()) => {
                self.config.context = Some(bytes);
                self.context_error = None;
            }
            Err(e) => self.context_error = Some(e),
        }
        self
    }

    /// How long a new worker has to connect (default 10 s; at most 24 hours).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.config.start_timeout = timeout;
        self
    }

    /// The settings built so far, for tests that run a slot without a pool.
    #[cfg(test)]
    pub(crate) fn into_config(self) -> Config {
        self.config
    }

    /// Calls `listener` with each [`Event`] as it happens: a worker started or exited
    /// (and why), a task started, finished (and how, and how long it took) or is
    /// retried. Each task gets exactly one `TaskFinished`; see [`Event`] for what the
    /// pool can tell of the tasks of a map, which run in batches. A later call
    /// replaces the listener.
    ///
    /// The listener runs on the pool's threads: mostly the slots' threads (one per
    /// worker), which manage the workers meanwhile, so **it must be quick** and must
    /// not block (send the event to a channel, bump a counter). Events of different
    /// slots come at once from different threads and interleave; those of one slot
    /// come in order. A listener is called for every task, a map's tasks included:
    /// with a map of very quick tasks, it adds its own cost to each. A pool without one
    /// builds no event. For counts, [`Pool::stats`] needs no listener.
    ///
    /// A panic in the listener is caught (the panic hook reports it, as for any
    /// panic) and the pool goes on: that event is lost to it, no task's outcome is.
    ///
    /// ```no_run
    /// use std::sync::mpsc;
    /// use procpool::{Event, Pool};
    ///
    /// let (tx, events) = mpsc::channel();
    /// let pool = Pool::builder()
    ///     .on_event(move |event| {
    ///         if let Event::WorkerExited { .. } | Event::TaskRetried { .. } = event {
    ///             let _ = tx.send(event.clone());
    ///         }
    ///     })
    ///     .build()?;
    /// // ... submit tasks; meanwhile, another thread reads `events`.
    /// # drop(events); drop(pool);
    /// # Ok::<(), procpool::BuildError>(())
    /// ```
    pub fn on_event(mut self, listener: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.config.events = Events::to(listener);
        self
    }

    /// Time between SIGTERM and SIGKILL when a worker is stopped (default 500 ms; at most
    /// 24 hours).
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.config.kill_grace = grace;
        self
    }

    /// Whether crashing workers may write core dumps (default: as the parent's limit
    /// says). `false` sets the workers' core size limit to zero.
    pub fn core_dumps(mut self, allow: bool) -> Self {
        self.config.core_dumps = allow;
        self
    }

    /// Consecutive start-up failures after which a worker slot stops respawning
    /// (default 3). When every slot has stopped, tasks end in
    /// [`TaskError::WorkerStart`](crate::TaskError::WorkerStart).
    pub fn max_start_failures(mut self, n: u32) -> Self {
        self.config.max_start_failures = n;
        self
    }

    /// Checks the settings and starts the workers (in the background: `build` does not
    /// wait for them to connect).
    ///
    /// # Errors
    /// [`BuildError::Config`] for settings out of range, a context that does not encode,
    /// a missing worker binary or the same task type registered twice under its name (two
    /// types under one name are allowed: each instantiation of a generic task has one);
    /// [`BuildError::MissingInit`] in a re-executed worker whose `main` skipped
    /// [`procpool::init()`](crate::init); [`BuildError::Io`] when a thread, pipe or the
    /// current executable's path cannot be had.
    pub fn build(mut self) -> Result<Pool, BuildError> {
        self.config.workers = self.workers.unwrap_or_else(num_cpus::get);
        let config = &self.config;
        if config.workers == 0 {
            return Err(BuildError::Config("workers must be at least 1".into()));
        }
        if config.max_in_flight == 0 {
            return Err(BuildError::Config(
                "max_in_flight must be at least 1".into(),
            ));
        }
        if config.max_tasks_per_worker == Some(0) {
            return Err(BuildError::Config(
                "max_tasks_per_worker must be at least 1".into(),
            ));
        }
        if config.max_start_failures == 0 {
            return Err(BuildError::Config(
                "max_start_failures must be at least 1".into(),
            ));
        }
        if config.timeout == Some(Duration::ZERO) || config.start_timeout.is_zero() {
            return Err(BuildError::Config("timeouts must be above zero".into()));
        }
        // Each is added to a clock reading to make a deadline, which a duration near
        // `Duration::MAX` overflows (a panic in the slot's thread, a task without an
        // outcome). A task's own timeout that long means no limit; these two have none.
        for (name, value) in [
            ("start_timeout", config.start_timeout),
            ("kill_grace", config.kill_grace),
        ] {
            if value > MAX_WAIT {
                return Err(BuildError::Config(format!(
                    "{name} must be at most {} hours",
                    MAX_WAIT.as_secs() / 3600
                )));
            }
        }
        if config.max_memory.is_some_and(|m| m < MIN_MEMORY) {
            return Err(BuildError::Config(format!(
                "max_memory must be at least {} MiB",
                MIN_MEMORY >> 20
            )));
        }
        if let Some(e) = &self.context_error {
            return Err(BuildError::Config(format!("context does not encode: {e}")));
        }
        match &self.spawn.launch {
            Launch::CurrentExe | Launch::ForkServer => {
                let started_as_worker = std::env::var_os(env::WORKER).is_some()
                    || std::env::var_os(env::FORK_SERVER).is_some();
                if started_as_worker && !crate::child::role::is_worker() {
                    return Err(BuildError::MissingInit);
                }
                let dups = crate::task::duplicate_names();
                if !dups.is_empty() {
                    return Err(BuildError::Config(format!(
                        "task names registered more than once: {}",
                        dups.join(", ")
                    )));
                }
            }
            Launch::Binary(path) | Launch::ForkServerBinary(path) => {
                if !path.is_file() {
                    return Err(BuildError::Config(format!(
                        "worker binary {} does not exist",
                        path.display()
                    )));
                }
            }
        }
        self.config.registry_here =
            matches!(self.spawn.launch, Launch::CurrentExe | Launch::ForkServer);
        self.config.launch = self.spawn.launch.clone();
        Pool::start(self.config, self.spawn)
    }
}
