//! [`Pool`]: submission, shutdown and the state its worker supervisors share.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use super::config::Config;
use super::gate::Gate;
use super::handle::TaskHandle;
use super::job::{Batch, Encoded, Job, JobOptions, Ticket, Work};
use super::map::{Map, MapUnordered};
use super::options::TaskOptions;
use super::shared::Shared;
use super::stats::Stats;
use super::telemetry::{Origin, Telemetry};
use super::trace::{JobTrace, Parent};
use crate::error::{BuildError, Direction, Side, SubmitError, SubmitErrorKind, TaskError};
use crate::launch::exec::SpawnSettings;
use crate::launch::spawner::Spawner;
use crate::slot::event::{TaskId, TaskRange};
use crate::slot::supervisor::Supervisor;
use crate::task::{self, Task, TaskTypes};
use crate::wire::codec;
use crate::wire::frame::{self, Request};

/// What a user wants to see of a pool: its size, how its workers start, and the
/// settings that govern their tasks (an unlimited setting shows as `None`).
impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.shared.config;
        let limited = |n: usize| (n != usize::MAX).then_some(n);
        f.debug_struct("Pool")
            .field("workers", &config.workers)
            .field("launch", &config.launch)
            .field("timeout", &config.timeout)
            .field("retries", &config.retries)
            .field("max_tasks_per_worker", &config.max_tasks_per_worker)
            .field("max_memory", &config.max_memory)
            .field("max_in_flight", &limited(config.max_in_flight))
            .field("accepting", &lock(&self.intake).is_some())
            .finish_non_exhaustive()
    }
}

/// How long `join` (or drop) waits, in all, for workers' output readers to close.
const READERS_WAIT: Duration = Duration::from_secs(1);

/// A pool of worker processes that run [`Task`]s, isolating each crash to its worker.
///
/// Build one with [`Pool::builder`] (or [`Pool::new`] for the defaults), then
/// [`submit`](Pool::submit) tasks one by one or stream them through
/// [`map`](Pool::map) / [`map_unordered`](Pool::map_unordered); the `_with` forms of
/// each take [`TaskOptions`] of their own. Every submitted task gets exactly one
/// outcome. Dropping the pool [terminates](Pool::terminate) it.
pub struct Pool {
    shared: Arc<Shared>,
    intake: Mutex<Option<Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    pub(crate) fn start(config: Config, spawn: SpawnSettings) -> Result<Pool, BuildError> {
        let setup = config.setup_frame();
        let spawner = Spawner::new(spawn, config.start_timeout, config.workers, &setup)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let workers = config.workers;
        let shared = Arc::new(Shared::new(config, Box::new(spawner), rx));
        let pool = Pool {
            shared: shared.clone(),
            intake: Mutex::new(Some(tx)),
            threads: Mutex::new(Vec::with_capacity(workers)),
        };
        for slot in 0..workers {
            let handle = Supervisor::spawn(shared.clone(), slot)?;
            lock(&pool.threads).push(handle);
        }
        Ok(pool)
    }

    /// Number of worker slots.
    pub fn workers(&self) -> usize {
        self.shared.config.workers
    }

    /// Whether the workers share this program's task registry (see `Config`).
    pub(crate) fn registry_here(&self) -> bool {
        self.shared.config.registry_here
    }

    pub(crate) fn max_tasks_per_worker(&self) -> Option<u64> {
        self.shared.config.max_tasks_per_worker
    }

    /// How many tasks the pool has, and has had, in each state, and how many workers
    /// it has started and lost: a snapshot, cheap to take (a few dozen atomic reads).
    ///
    /// Counting is always on. Once every task submitted has its outcome (each handle
    /// waited for, each map consumed), [`finished`](Stats::finished) holds exactly
    /// the outcomes the callers got. For each event as it happens, see
    /// [`PoolBuilder::on_event`](crate::PoolBuilder::on_event).
    ///
    /// ```no_run
    /// # fn demo<T: procpool::Task>(pool: &procpool::Pool, inputs: Vec<T>) {
    /// let failed = pool.map(inputs).filter(Result::is_err).count() as u64;
    /// let stats = pool.stats();
    /// assert_eq!(stats.finished.all_errors(), failed);
    /// assert_eq!(stats.queued + stats.running, 0);
    /// println!("{stats:?}");
    /// # }
    /// ```
    pub fn stats(&self) -> Stats {
        self.shared.telemetry.stats()
    }

    /// Where what happens in the pool is counted and told.
    pub(crate) fn telemetry(&self) -> &Arc<Telemetry> {
        &self.shared.telemetry
    }

    /// A number no other job or map of this pool has.
    pub(crate) fn new_id(&self) -> u64 {
        self.shared.new_id()
    }

    /// Queues a task, waiting for room if the pool is at its
    /// [in-flight limit](crate::PoolBuilder::max_in_flight). It runs with its own
    /// settings ([`Task::options`]) where it has any, the pool's elsewhere.
    ///
    /// A task that cannot be encoded is accepted and its handle reports
    /// [`TaskError::Codec`].
    ///
    /// # Errors
    /// Hands the task back when the pool is shut down or can no longer start workers.
    pub fn submit<T: Task>(&self, task: T) -> Result<TaskHandle<T::Output>, SubmitError<T>> {
        self.submit_with(task, &TaskOptions::new())
    }

    /// Like [`submit`](Pool::submit), with `options` in place of the task's own
    /// settings ([`Task::options`]) and the pool's, where they are set (a timeout or
    /// retries for this one submit).
    ///
    /// # Errors
    /// Hands the task back when the pool is shut down or can no longer start workers.
    pub fn submit_with<T: Task>(
        &self,
        task: T,
        options: &TaskOptions,
    ) -> Result<TaskHandle<T::Output>, SubmitError<T>> {
        self.enqueue(task, self.resolve::<T>(options), true)
            .map(TaskHandle::new)
    }

    /// Queues a task if there is room now.
    ///
    /// # Errors
    /// Hands the task back when the pool is at its in-flight limit, shut down, or can no
    /// longer start workers.
    pub fn try_submit<T: Task>(&self, task: T) -> Result<TaskHandle<T::Output>, SubmitError<T>> {
        self.try_submit_with(task, &TaskOptions::new())
    }

    /// Like [`try_submit`](Pool::try_submit), with `options` in place of the task's own
    /// settings and the pool's, where they are set.
    ///
    /// # Errors
    /// Hands the task back when the pool is at its in-flight limit, shut down, or can no
    /// longer start workers.
    pub fn try_submit_with<T: Task>(
        &self,
        task: T,
        options: &TaskOptions,
    ) -> Result<TaskHandle<T::Output>, SubmitError<T>> {
        self.enqueue(task, self.resolve::<T>(options), false)
            .map(TaskHandle::new)
    }

    /// Runs every input and yields the outcomes in input order.
    ///
    /// Lazy: inputs are pulled only as room frees up, so an endless iterator is fine.
    /// Dropping the iterator cancels the tasks it still has in flight.
    pub fn map<I>(&self, inputs: I) -> Map<'_, I::IntoIter>
    where
        I: IntoIterator,
        I::Item: Task,
    {
        self.map_with(inputs, &TaskOptions::new())
    }

    /// Like [`map`](Pool::map), with `options` in place of the task's own settings and
    /// the pool's for every task of the map. A timeout still applies to each task alone,
    /// though the map sends them in batches.
    pub fn map_with<I>(&self, inputs: I, options: &TaskOptions) -> Map<'_, I::IntoIter>
    where
        I: IntoIterator,
        I::Item: Task,
    {
        Map::new(self, inputs.into_iter(), self.resolve::<I::Item>(options))
    }

    /// Like [`map`](Pool::map), but yields `(input index, outcome)` as tasks finish.
    pub fn map_unordered<I>(&self, inputs: I) -> MapUnordered<'_, I::IntoIter>
    where
        I: IntoIterator,
        I::Item: Task,
    {
        self.map_unordered_with(inputs, &TaskOptions::new())
    }

    /// Like [`map_unordered`](Pool::map_unordered), with `options` in place of the
    /// task's own settings and the pool's for every task of the map.
    pub fn map_unordered_with<I>(
        &self,
        inputs: I,
        options: &TaskOptions,
    ) -> MapUnordered<'_, I::IntoIter>
    where
        I: IntoIterator,
        I::Item: Task,
    {
        MapUnordered::new(self, inputs.into_iter(), self.resolve::<I::Item>(options))
    }

    /// What a job of `T` submitted with `options` runs with: the task's own settings
    /// where they leave them unset, the pool's where those do.
    pub(crate) fn resolve<T: Task>(&self, options: &TaskOptions) -> JobOptions {
        self.resolve_over(options, &T::options())
    }

    /// What a job submitted with `options` runs with, for a task whose own settings
    /// are `own`.
    pub(crate) fn resolve_over(&self, options: &TaskOptions, own: &TaskOptions) -> JobOptions {
        options.over(own).resolve(self.shared.config.job_options())
    }

    /// Stops taking tasks; those already queued still run. Returns at once.
    pub fn shutdown(&self) {
        self.shared.gate.close();
        lock(&self.intake).take();
    }

    /// Stops taking tasks, lets the queued ones finish, stops the workers and waits for
    /// all of it.
    pub fn join(self) {
        self.shutdown();
        self.join_threads();
    }

    /// Stops at once: running tasks' workers are killed, and every task without an
    /// outcome yet ends in [`TaskError::PoolClosed`]. Waits for the workers to be reaped.
    pub fn terminate(self) {
        // Drop does the work.
    }

    fn terminate_now(&self) {
        self.shared.set_terminating();
        self.shutdown();
        while let Ok(job) = self.shared.queue.try_recv() {
            // One cancelled while queued has its outcome, counted already.
            if job.ticket.start() {
                let closed = TaskError::PoolClosed;
                self.shared.telemetry.settled_here(job.range(), &closed);
                job.fail(closed);
            }
        }
    }

    fn join_threads(&self) {
        let threads = std::mem::take(&mut *lock(&self.threads));
        for handle in threads {
            // A supervisor that panicked has already lost its worker; nothing to add.
            let _ = handle.join();
        }
        self.shared.reaper.finish(self.shared.is_terminating());
        self.shared.wait_for_readers(READERS_WAIT);
    }

    /// The in-flight limit every submit and every map batch goes through.
    pub(crate) fn gate(&self) -> &Gate {
        &self.shared.gate
    }

    /// A ticket for a job that has taken an in-flight place: from here the ticket holds
    /// the place. Its outcome gives it back, or its drop if it never gets one (the job
    /// refused, or a panic in the task's `Serialize` unwinding to the caller).
    pub(crate) fn admitted(&self) -> Arc<Ticket> {
        Arc::new(Ticket::new(Some(self.shared.gate.clone())))
    }

    /// Takes an in-flight place (with `block`, waiting for one), then encodes and queues
    /// one task, to run with `options`. Shared by `submit` and `try_submit`.
    fn enqueue<T: Task>(
        &self,
        task: T,
        options: JobOptions,
        block: bool,
    ) -> Result<Arc<Ticket>, SubmitError<T>> {
        if let Err(kind) = self.shared.gate.acquire(block) {
            return Err(SubmitError::new(task, kind));
        }
        self.enqueue_admitted(task, options)
    }

    /// Encodes and queues one task, to run with `options`, once it has taken an
    /// in-flight place.
    pub(crate) fn enqueue_admitted<T: Task>(
        &self,
        task: T,
        options: JobOptions,
    ) -> Result<Arc<Ticket>, SubmitError<T>> {
        let (id, tasks, ticket) = self.admitted_one(T::NAME);
        let settle_here = |error: TaskError| {
            self.settle_one(tasks, &ticket, error);
            Ok(ticket.clone())
        };
        // Checked before anything is encoded: never sent as types a worker would read
        // as others.
        let types = match task::fingerprint_of::<T>(self.shared.config.registry_here) {
            Ok(types) => types,
            Err(error) => return settle_here(error),
        };
        let mut bytes = Vec::new();
        let frame = match codec::encode_with_fds(&task, &mut bytes) {
            Ok(fds) => {
                let header = Request::Run {
                    id,
                    task: T::NAME.to_owned(),
                    types,
                    fds: fds.len() as u32,
                };
                Encoded {
                    bytes: frame::seal(bytes, &header),
                    fds,
                }
            }
            Err(message) => {
                return settle_here(TaskError::Codec {
                    side: Side::Parent,
                    direction: Direction::ToWorker,
                    message,
                })
            }
        };
        let job = Job {
            id,
            attempts: 0,
            options,
            ticket: ticket.clone(),
            work: Work::One(frame),
            types: TaskTypes::of::<T>(),
            name: T::NAME,
            trace: JobTrace::under(Parent::here()),
        };
        match self.send_one(job) {
            true => Ok(ticket),
            false => Err(SubmitError::new(task, SubmitErrorKind::Closed)),
        }
    }

    /// A new task id, and a ticket that has taken an in-flight place and reports the
    /// outcome of that one task, named `name`.
    pub(crate) fn admitted_one(&self, name: &'static str) -> (u64, TaskRange, Arc<Ticket>) {
        let id = self.shared.new_id();
        let tasks = TaskRange {
            name,
            first: TaskId::Submitted(id),
            count: 1,
        };
        let ticket = self.admitted();
        ticket.report_to(Origin {
            telemetry: self.shared.telemetry.clone(),
            tasks,
        });
        (id, tasks, ticket)
    }

    /// Settles at once the one task of `ticket`, which never reaches a worker.
    pub(crate) fn settle_one(&self, tasks: TaskRange, ticket: &Ticket, error: TaskError) {
        self.shared.telemetry.accepted(1);
        self.shared.telemetry.settled_here(tasks, &error);
        ticket.complete(Err(error));
    }

    /// Queues a job of one task; `false` if the pool has stopped taking jobs.
    pub(crate) fn send_one(&self, job: Job) -> bool {
        // Counted before a slot can settle it.
        self.shared.telemetry.accepted(1);
        let sent = self.send(job);
        if !sent {
            self.shared.telemetry.refused(1);
        }
        sent
    }

    /// Queues a batch of a map of tasks of `types`, to run with `options`, under
    /// `ticket`, which has taken its in-flight place (see [`admitted`](Pool::admitted));
    /// its spans go under `parent`.
    ///
    /// # Errors
    /// `PoolClosed` when the pool has stopped taking jobs.
    pub(crate) fn enqueue_batch(
        &self,
        ticket: Arc<Ticket>,
        mut batch: Batch,
        types: TaskTypes,
        options: JobOptions,
        parent: Parent,
    ) -> Result<(), TaskError> {
        let id = self.shared.new_id();
        batch.reheader(id);
        let tasks = batch.range();
        ticket.report_to(Origin {
            telemetry: self.shared.telemetry.clone(),
            tasks,
        });
        let job = Job {
            id,
            attempts: 0,
            options,
            ticket,
            name: tasks.name,
            work: Work::Batch(batch),
            types,
            trace: JobTrace::under(parent),
        };
        self.shared.telemetry.accepted(tasks.count);
        if self.send(job) {
            Ok(())
        } else {
            self.shared.telemetry.refused(tasks.count);
            Err(SubmitError::new((), SubmitErrorKind::Closed).into())
        }
    }

    /// Hands a job to the supervisors; `false` if the pool has stopped taking jobs
    /// (the job is dropped, and its ticket with it gives its in-flight place back).
    fn send(&self, job: Job) -> bool {
        lock(&self.intake)
            .as_ref()
            .is_some_and(|tx| tx.send(job).is_ok())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !lock(&self.threads).is_empty() {
            self.terminate_now();
            self.join_threads();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::Pool;

    #[test]
    fn a_pool_shows_its_size_launch_and_settings_not_its_insides() {
        let pool = Pool::builder()
            .workers(2)
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap();
        let shown = format!("{pool:?}");
        assert_eq!(
            shown,
            "Pool { workers: 2, launch: CurrentExe, timeout: Some(3s), retries: 0, \
             max_tasks_per_worker: None, max_memory: None, max_in_flight: None, \
             accepting: true, .. }"
        );
        pool.shutdown();
        assert!(format!("{pool:?}").contains("accepting: false"));
    }
}
