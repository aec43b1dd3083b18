//! The parent-side supervisor of one worker slot: the thread that owns the slot's
//! worker outright and moves it through the states of `State` (`state.rs`), one
//! method per state returning the next (the lifecycle diagram is in
//! `docs/ARCHITECTURE.md`).
//!
//! The states live in files of their own: starting a worker and failed starts in
//! `start.rs`, a greeting or busy worker in `busy.rs` (a slow task's work taken back in
//! `take_back.rs`), a lost one in `lost.rs`; waiting idle, sending a job, retiring,
//! terminating and giving up here. The decisions they take are pure functions
//! (`answer.rs`, `loss.rs`, `pipeline.rs`); each job's outcome is decided in this slot,
//! exactly once.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::event::ExitCause;
use super::state::{busy_with, Backlog, State};
use super::worker::{idle_worker_lives, InFlight, Worker};
use crate::error::TaskError;
use crate::pool::job::Job;
use crate::pool::shared::Shared;
use crate::pool::telemetry::Telemetry;
use crate::sys;
use crate::wire::frame::{self, Request};

/// How often a busy supervisor looks at cancellation, deadline, memory and liveness.
pub(super) const TICK: Duration = Duration::from_millis(10);
/// How long a crash report waits for the dead worker's stderr to drain.
pub(super) const TAIL_WAIT: Duration = Duration::from_millis(250);
/// Longest pause between two start attempts.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Why [`Supervisor::next_job_waiting`] found no job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoJob {
    /// None came in time.
    Empty,
    /// The queue is closed and drained.
    Closed,
}

#[derive(Debug)]
pub(crate) struct Supervisor {
    pub(super) shared: Arc<Shared>,
    /// The slot's number, from 0: it names the thread and the slot's events.
    pub(super) slot: usize,
}

impl Supervisor {
    pub(crate) fn spawn(shared: Arc<Shared>, slot: usize) -> io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name(format!("procpool-slot-{slot}"))
            .spawn(move || Supervisor { shared, slot }.run())
    }

    fn run(self) {
        let mut state = State::Starting {
            failures: 0,
            backlog: Backlog::new(),
        };
        loop {
            // Only a busy slot's worker runs tasks: each state but `Busy` runs none.
            if !matches!(state, State::Busy { .. }) {
                self.running(0);
            }
            state = match state {
                State::Starting { failures, backlog } => self.starting(failures, backlog),
                State::Greeting {
                    worker,
                    in_flight,
                    backlog,
                    deadline,
                } => self.greeting(worker, in_flight, backlog, deadline),
                State::Idle { worker, backlog } => self.idle(worker, backlog),
                State::Busy {
                    worker,
                    in_flight,
                    backlog,
                } => self.busy(worker, in_flight, backlog),
                State::Lost {
                    worker,
                    in_flight,
                    backlog,
                    error,
                    ready,
                } => self.lost(worker, in_flight, backlog, error, ready),
                State::Exited { backlog } => State::Starting {
                    failures: 0,
                    backlog,
                },
                State::Terminating { worker, backlog } => return self.terminating(worker, backlog),
                State::GaveUp { message, backlog } => return self.give_up(message, backlog),
            };
        }
    }

    /// Waits for the next job (the backlog's first, else one from the queue) and sends
    /// it, watching the worker every tick meanwhile. A worker that ends while idle, or
    /// is found ended as a job comes, is replaced; no task ran on it, so none is blamed
    /// and the job waits for the next worker, no attempt counted.
    fn idle(&self, mut worker: Worker, mut backlog: Backlog) -> State {
        loop {
            if self.shared.is_terminating() {
                return State::Terminating {
                    worker: Some(worker),
                    backlog,
                };
            }
            let job = match self.next_job_waiting(&mut backlog, Some(TICK)) {
                Ok(job) => Some(job),
                Err(NoJob::Closed) => {
                    return State::Terminating {
                        worker: Some(worker),
                        backlog,
                    }
                }
                Err(NoJob::Empty) => {
                    // Its output is read from the first tick on, as in Busy: a slot
                    // that goes idle while the pool starts wakes no reading thread
                    // before the first tasks come.
                    worker.process.start_output();
                    None
                }
            };
            if !idle_worker_lives(&mut worker) {
                if let Some(job) = job {
                    backlog.push_front(job);
                }
                // One that dies before its first task, soon after its start, failed
                // its start: replacing it again and again, at once, would spin.
                let soon = worker.head_started.elapsed() < self.shared.config.start_timeout;
                if worker.tasks == 0 && soon {
                    let failures = worker.start_failures;
                    let message = self.died_idle(&mut worker);
                    self.exited(worker, ExitCause::FailedStart(message.clone()));
                    return self.start_failed(failures, message, backlog);
                }
                // Killed (its group too) and reaped.
                self.exited(worker, ExitCause::DiedIdle);
                return State::Exited { backlog };
            }
            if let Some(job) = job {
                return self.dispatch(worker, job, backlog, None);
            }
        }
    }

    /// Sends `job` to a worker with nothing in flight: a ready one (`greeting` is
    /// `None`), or a new one that must be ready by the `greeting` deadline.
    pub(super) fn dispatch(
        &self,
        mut worker: Worker,
        job: Job,
        mut backlog: Backlog,
        greeting: Option<Instant>,
    ) -> State {
        if self.shared.is_terminating() {
            self.fail(job, None, TaskError::PoolClosed);
            return State::Terminating {
                worker: Some(worker),
                backlog,
            };
        }
        let room = self.room(&worker, &VecDeque::new());
        let job = self.fit(&mut worker, job, room, &mut backlog);
        // A crash report shows what the worker wrote while running the task; a worker
        // not ready yet keeps its words until `Ready` (a failed start quotes them).
        if greeting.is_none() {
            worker.process.clear_stderr_tail();
        }
        // Named before the worker can run it, so that even its first lines say whose.
        worker.process.running(job.name);
        let mut sent = InFlight::new(job);
        match (worker.send([&mut sent]), greeting) {
            (Ok(()), Some(deadline)) => State::Greeting {
                worker,
                in_flight: VecDeque::from([sent]),
                backlog,
                deadline,
            },
            (Ok(()), None) => {
                self.job_started(&worker, &mut sent.job);
                busy_with(worker, sent, backlog)
            }
            // A ready worker that ended before its job went in never started it: the
            // job goes back, no attempt counted, and the worker is replaced.
            (Err(e), None) if !worker.link.is_broken() && crate::link::is_peer_gone(&e) => {
                backlog.push_front(sent.job);
                self.exited(worker, ExitCause::DiedIdle);
                State::Exited { backlog }
            }
            // Lost: a worker not ready yet has failed its start (none of its jobs
            // started); a ready one whose link broke mid-frame is blamed as crashed.
            (Err(_), greeting) => {
                let error = self.crashed(&mut worker, None);
                State::Lost {
                    worker,
                    in_flight: VecDeque::from([sent]),
                    backlog,
                    error,
                    ready: greeting.is_none(),
                }
            }
        }
    }

    /// The next job to send, without waiting: the backlog's first, else one handed
    /// back by another slot, else the queue's. A job cancelled while it waited gets its
    /// outcome here and is skipped. `None` if there is none now.
    pub(super) fn next_job(&self, backlog: &mut Backlog) -> Option<Job> {
        self.next_job_waiting(backlog, None).ok()
    }

    /// [`next_job`](Self::next_job), waiting up to `wait` for one to come, and saying
    /// why there is none: none came in time, or the queue is closed (and drained).
    fn next_job_waiting(
        &self,
        backlog: &mut Backlog,
        wait: Option<Duration>,
    ) -> Result<Job, NoJob> {
        use crossbeam_channel::{select, TryRecvError};
        loop {
            let (job, queued) = match backlog.pop_front() {
                Some(job) => (job, false),
                None => match self.shared.returned().try_recv() {
                    Ok(job) => (job, false),
                    Err(_) => match wait {
                        None => match self.shared.queue.try_recv() {
                            Ok(job) => (job, true),
                            Err(TryRecvError::Empty) => return Err(NoJob::Empty),
                            Err(TryRecvError::Disconnected) => return Err(NoJob::Closed),
                        },
                        Some(time) => select! {
                            recv(self.shared.returned()) -> job => {
                                (job.expect("the pool holds both ends"), false)
                            }
                            recv(self.shared.queue) -> job => match job {
                                Ok(job) => (job, true),
                                Err(_) => return Err(NoJob::Closed),
                            },
                            default(time) => return Err(NoJob::Empty),
                        },
                    },
                },
            };
            if queued {
                // A job cancelled while queued has its outcome already.
                if job.ticket.start() {
                    return Ok(job);
                }
                continue;
            }
            // Already running (held here, or handed back); only a cancel may have
            // come since.
            if job.ticket.is_cancel_requested() {
                self.fail(job, None, TaskError::Cancelled);
                continue;
            }
            return Ok(job);
        }
    }

    /// The queue is closed and drained (retire the worker), or the pool is terminating
    /// (kill it). Jobs still owed an outcome end in `PoolClosed`: those this slot
    /// holds and, when terminating, any handed back that no slot has taken. (While the
    /// pool only closes, a job handed back runs: the slot that handed it back is busy,
    /// and takes it when its worker is free, if no other slot has.)
    fn terminating(&self, worker: Option<Worker>, backlog: Backlog) {
        let returned: Vec<Job> = match self.shared.is_terminating() {
            true => self.shared.returned().try_iter().collect(),
            false => Vec::new(),
        };
        for job in backlog.into_iter().chain(returned) {
            self.fail(job, None, TaskError::PoolClosed);
        }
        if let Some(worker) = worker {
            if self.shared.is_terminating() {
                self.exited(worker, ExitCause::PoolClosed); // killed and reaped
            } else {
                self.retire(worker, ExitCause::PoolClosed);
            }
        }
    }

    pub(super) fn is_due_for_recycling(&self, w: &Worker) -> bool {
        let config = &self.shared.config;
        if config
            .max_tasks_per_worker
            .is_some_and(|max| w.tasks >= max)
        {
            return true;
        }
        config.max_memory.is_some_and(|limit| {
            sys::resident_bytes(w.process.pid()).is_some_and(|rss| rss > limit)
        })
    }

    /// Asks a worker to exit and leaves it to the reaper, which makes sure it does.
    pub(super) fn retire(&self, mut w: Worker, cause: ExitCause) {
        let pid = w.process.pid();
        self.telemetry().worker_exited(self.slot, pid, cause);
        // What it writes on its way out is read by the reaper, as it writes it or
        // once it has ended; a captured stream, which has a thread of its own, from
        // now on (the user's function may be slow, and the reaper must not be).
        w.process.start_captured_output();
        let _ = w.link.send(&frame::header_only(&Request::Shutdown));
        let grace = self.shared.config.kill_grace;
        self.shared.reaper.retire(w.process, grace);
    }

    /// Stops respawning. The last slot to give up fails every task still to come, so
    /// none waits forever, until the pool is shut down.
    fn give_up(&self, message: String, backlog: Backlog) {
        let error = TaskError::WorkerStart { message };
        for job in backlog {
            self.fail(job, None, error.clone());
        }
        if !self.shared.slot_gave_up() {
            return;
        }
        self.shared.gate.set_broken();
        let error = || {
            if self.shared.is_terminating() {
                TaskError::PoolClosed
            } else {
                error.clone()
            }
        };
        // Jobs handed back by a slot before it gave up too have started already; the
        // queue's have not. No slot is left to hand any more back.
        loop {
            crossbeam_channel::select! {
                recv(self.shared.returned()) -> job => {
                    self.fail(job.expect("the pool holds both ends"), None, error());
                }
                recv(self.shared.queue) -> job => match job {
                    // Already cancelled (a dropped map's batch): nothing is owed.
                    Ok(job) if !job.ticket.start() => {}
                    Ok(job) => self.fail(job, None, error()),
                    Err(_) => break,
                },
            }
        }
        for job in self.shared.returned().try_iter() {
            self.fail(job, None, error());
        }
    }

    /// Where what happens in the slot is counted and told.
    pub(super) fn telemetry(&self) -> &Telemetry {
        &self.shared.telemetry
    }

    /// The slot's worker runs `tasks` tasks now (the job it took up, less those
    /// answered for): set before those answered for reach their callers.
    pub(super) fn running(&self, tasks: usize) {
        self.telemetry().running(self.slot, tasks);
    }

    /// Ends `job` in `error` (`pid`: the worker it was sent to, if any).
    pub(super) fn fail(&self, job: Job, pid: Option<u32>, error: TaskError) {
        self.fail_after(job, pid, error, None);
    }

    /// Ends `job` in `error`, having run on worker `pid` since `since`.
    pub(super) fn fail_after(
        &self,
        job: Job,
        pid: Option<u32>,
        error: TaskError,
        since: Option<Instant>,
    ) {
        let tasks = job.range();
        let outcome = Err(&error);
        self.telemetry()
            .finished(self.slot, pid, tasks, outcome, since, &job.trace);
        job.fail(error);
    }

    /// `job` is the one `worker` runs now: its events say so, and so do the prefixes of
    /// the lines the worker writes from now on.
    pub(super) fn job_started(&self, worker: &Worker, job: &mut Job) {
        worker.process.running(job.name);
        let tasks = job.range();
        self.telemetry()
            .started(self.slot, worker.process.pid(), tasks, &mut job.trace);
    }

    /// The worker leaves the slot for `cause`: dropped, it is killed (its group too) and
    /// reaped, if it has not been already.
    pub(super) fn exited(&self, worker: Worker, cause: ExitCause) {
        let pid = worker.process.pid();
        drop(worker);
        self.telemetry().worker_exited(self.slot, pid, cause);
    }
}
