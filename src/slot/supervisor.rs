//! The parent-side supervisor of one worker slot.
//!
//! One thread per slot owns the slot's worker process outright and moves it through an
//! explicit lifecycle:
//!
//! ```text
//! Starting ──ready──▶ Idle ──job──▶ Busy{in flight} ──all answered──▶ Idle
//!    │ fails N times                  │ crash, timeout, cancel, memory, bad frame
//!    ▼                                ▼
//! GaveUp                          Exited ──▶ Starting (a fresh worker; the jobs that
//!                                            never started go first)
//! Idle ──queue closed──▶ Terminating ──▶ Exited
//! ```
//!
//! While Busy it keeps quick tasks flowing to the worker ahead of the running one
//! (pipelining) and waits for answers in short ticks, so cancellation, the deadline,
//! the memory limit and a worker that died without closing its socket are all noticed
//! within one tick. Each job's outcome is decided here, exactly once.

use std::collections::VecDeque;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::answer::{classify, Classified, Expected};
use super::loss::{self, Loss, Verdict};
use super::pipeline;
use super::process::WorkerProcess;
use crate::error::TaskError;
use crate::link::{ParentEnd, RecvError};
use crate::pool::job::{Encoded, Job, RawOutcome, Segment};
use crate::pool::shared::Shared;
use crate::sys;
use crate::wire::frame::{self, Request, Response};
use crate::wire::journal::Journal;

/// How often a busy supervisor looks at cancellation, deadline, memory and liveness.
const TICK: Duration = Duration::from_millis(10);
/// How long a crash report waits for the dead worker's stderr to drain.
const TAIL_WAIT: Duration = Duration::from_millis(250);
/// Longest pause between two start attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How long [`Supervisor::next_job_waiting`] waits for the queue.
#[derive(Clone, Copy)]
enum Wait {
    Not,
    For(Duration),
    Forever,
}

/// Why [`Supervisor::next_job_waiting`] found no job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoJob {
    /// None came in time.
    Empty,
    /// The queue is closed and drained.
    Closed,
}

/// A started worker: its process and its link.
#[derive(Debug)]
struct Worker {
    process: WorkerProcess,
    link: ParentEnd,
    tasks: u64,
    /// Failed starts in a row before this worker's: a worker that dies before its
    /// first task, soon after its start, is one more.
    start_failures: u32,
    /// When the job at the head of the pipeline started (as far as the parent can
    /// tell: when the answer before it arrived, or when it was sent to an idle worker).
    head_started: Instant,
    /// Mean time per task lately, in seconds; `None` before the first answer.
    per_task: Option<f64>,
    /// A send failed: the worker is gone, which the next tick confirms.
    dead: bool,
    /// Where it records batch progress; made before its first batch of several tasks.
    journal: Option<Journal>,
    /// Set while its `Ready` has not come: its first job went out behind the `Setup`.
    not_ready: Option<NotReady>,
}

/// A worker that was sent a job before it said `Ready`.
#[derive(Debug, Clone, Copy)]
struct NotReady {
    /// When it counts as a failed start.
    deadline: Instant,
    /// Failed starts in a row before this one.
    failures: u32,
}

impl Worker {
    /// The head job answered in full (`tasks` outcomes): the next one has started.
    fn finished(&mut self, tasks: usize) {
        let now = Instant::now();
        let took = now.duration_since(self.head_started).as_secs_f64();
        self.per_task = Some(self.per_task.map_or(took, |mean| 0.8 * mean + 0.2 * took));
        self.head_started = now;
        self.tasks += tasks as u64;
        self.process.clear_stderr_tail();
    }

    /// The head batch answered for `tasks` of its tasks: the next of them has started.
    fn progressed(&mut self, tasks: usize) {
        self.head_started = Instant::now();
        self.tasks += tasks as u64;
        self.process.clear_stderr_tail();
    }
}

/// Jobs this slot has taken and owes an outcome: held for a retry after a crash, or
/// sent to a worker that died before running them. They go first on the next worker.
type Backlog = VecDeque<Job>;

/// Where a slot is in its worker's lifecycle; each state owns what it needs.
enum State {
    /// No worker yet; `failures` failed starts in a row so far.
    Starting { failures: u32, backlog: Backlog },
    /// A worker ready for a job.
    Idle { worker: Worker, backlog: Backlog },
    /// A worker running the first of `in_flight` (all sent to it, in order).
    Busy {
        worker: Worker,
        in_flight: VecDeque<InFlight>,
        backlog: Backlog,
    },
    /// The worker is gone and reaped.
    Exited { backlog: Backlog },
    /// The pool is closing: last rites for the worker and any held job.
    Terminating {
        worker: Option<Worker>,
        backlog: Backlog,
    },
    /// Starting failed `max_start_failures` times in a row.
    GaveUp { message: String, backlog: Backlog },
}

/// A job sent to the worker, and whether it has been told to skip it.
struct InFlight {
    job: Job,
    skip_sent: Option<Instant>,
    /// A batch's tasks answered by this worker so far.
    received: usize,
    /// A batch's tasks that the journal showed done at the last look.
    seen: u64,
}

impl InFlight {
    fn new(job: Job) -> InFlight {
        InFlight {
            job,
            skip_sent: None,
            received: 0,
            seen: 0,
        }
    }
}

/// What happened to the job at the head.
enum Answer {
    /// A single task's outcome; the worker lives on.
    Outcome(RawOutcome),
    /// `count` more tasks of a batch have their outcomes (delivered); `last` if that
    /// was all of them.
    Batch { count: usize, last: bool },
    /// The worker skipped it, as asked: it was cancelled before it started.
    Skipped,
    /// The worker applied its `Setup`: the head job starts now.
    Ready,
    /// The worker is gone (reaped, or killed for breaking the protocol), with the
    /// error of the task it was running.
    Lost(TaskError),
}

#[derive(Debug)]
pub(crate) struct Supervisor {
    shared: Arc<Shared>,
}

impl Supervisor {
    pub(crate) fn spawn(shared: Arc<Shared>, slot: usize) -> io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name(format!("procpool-slot-{slot}"))
            .spawn(move || Supervisor { shared }.run())
    }

    fn run(self) {
        let mut state = State::Starting {
            failures: 0,
            backlog: Backlog::new(),
        };
        loop {
            state = match state {
                State::Starting { failures, backlog } => self.starting(failures, backlog),
                State::Idle { worker, backlog } => self.idle(worker, backlog),
                State::Busy {
                    worker,
                    in_flight,
                    backlog,
                } => self.busy(worker, in_flight, backlog),
                State::Exited { backlog } => State::Starting {
                    failures: 0,
                    backlog,
                },
                State::Terminating { worker, backlog } => return self.terminating(worker, backlog),
                State::GaveUp { message, backlog } => return self.give_up(message, backlog),
            };
        }
    }

    /// Starts a worker. A job already waiting goes out right behind its `Setup`,
    /// without waiting for `Ready` (a death before `Ready` still counts as a failed
    /// start, and the job goes back to the backlog); with none waiting, the slot waits
    /// for `Ready`, so an idle slot always has a warm worker.
    fn starting(&self, failures: u32, mut backlog: Backlog) -> State {
        if self.shared.is_terminating() {
            return State::Terminating {
                worker: None,
                backlog,
            };
        }
        let (worker, sent) = self.start(failures, &mut backlog);
        let mut worker = match worker {
            Ok(mut worker) => {
                worker.start_failures = failures;
                worker
            }
            Err(message) => {
                // A job sent to a worker that never started goes back, no attempt
                // counted.
                if let Some(job) = sent {
                    backlog.push_front(job);
                }
                return self.start_failed(failures, message, backlog);
            }
        };
        let waiting = match sent {
            Some(job) => Some((job, true)),
            None => self.next_job(&mut backlog, false).map(|job| (job, false)),
        };
        if let Some((job, already_sent)) = waiting {
            worker.not_ready = Some(NotReady {
                deadline: Instant::now() + self.shared.config.start_timeout,
                failures,
            });
            if already_sent {
                return busy_with(worker, job, backlog);
            }
            return self.dispatch(worker, job, backlog);
        }
        match self.await_ready(&mut worker) {
            Ok(()) => State::Idle { worker, backlog },
            Err(message) => self.start_failed(failures, message, backlog),
        }
    }

    /// A start failed (`failures` had failed before it): back off and try again, or
    /// give up.
    fn start_failed(&self, failures: u32, message: String, backlog: Backlog) -> State {
        if self.shared.is_terminating() {
            return State::Terminating {
                worker: None,
                backlog,
            };
        }
        if failures + 1 >= self.shared.config.max_start_failures {
            return State::GaveUp { message, backlog };
        }
        self.back_off(failures + 1);
        State::Starting {
            failures: failures + 1,
            backlog,
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
            let job = match self.next_job_waiting(&mut backlog, Wait::For(TICK)) {
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
                    return self.start_failed(failures, message, backlog);
                }
                // Killed (its group too) and reaped.
                drop(worker);
                return State::Exited { backlog };
            }
            if let Some(job) = job {
                return self.dispatch(worker, job, backlog);
            }
        }
    }

    /// Sends `job` to a worker with nothing in flight.
    fn dispatch(&self, mut worker: Worker, job: Job, mut backlog: Backlog) -> State {
        if self.shared.is_terminating() {
            job.fail(TaskError::PoolClosed);
            return State::Terminating {
                worker: Some(worker),
                backlog,
            };
        }
        let room = self.room(&worker, &VecDeque::new());
        let job = self.fit(&mut worker, job, room, &mut backlog);
        // A crash report shows what the worker wrote while running the task; a worker
        // not ready yet keeps its words until `Ready` (a failed start quotes them).
        if worker.not_ready.is_none() {
            worker.process.clear_stderr_tail();
        }
        match send_jobs(&mut worker.link, [&job]) {
            Ok(()) => {}
            // A ready worker that ended before its job went in never started it: the
            // job goes back, no attempt counted, and the worker is replaced.
            Err(e)
                if worker.not_ready.is_none()
                    && !worker.link.is_broken()
                    && crate::link::is_peer_gone(&e) =>
            {
                backlog.push_front(job);
                drop(worker);
                return State::Exited { backlog };
            }
            // The crash is noticed (and the job dealt with) in Busy: a worker not ready
            // yet has failed its start, and none of its jobs started.
            Err(_) => worker.dead = true,
        }
        busy_with(worker, job, backlog)
    }

    /// The next job to send: the backlog's first, else the queue's (waiting for one if
    /// `block`). A job cancelled while it waited gets its outcome here and is skipped.
    /// `None` with an empty backlog means the queue is closed and drained (or, without
    /// `block`, empty).
    fn next_job(&self, backlog: &mut Backlog, block: bool) -> Option<Job> {
        self.next_job_waiting(backlog, if block { Wait::Forever } else { Wait::Not })
            .ok()
    }

    /// [`next_job`](Self::next_job), waiting for the queue as `wait` says, and saying
    /// why there is none: the queue is empty (a wait `For` a while ran out) or closed.
    fn next_job_waiting(&self, backlog: &mut Backlog, wait: Wait) -> Result<Job, NoJob> {
        use crossbeam_channel::{RecvTimeoutError, TryRecvError};
        loop {
            let job = match backlog.pop_front() {
                // Already Running; only a cancel may have come since.
                Some(job) if job.ticket.is_cancel_requested() => {
                    job.fail(TaskError::Cancelled);
                    continue;
                }
                Some(job) => return Ok(job),
                None => match wait {
                    Wait::Not => self.shared.queue.try_recv().map_err(|e| match e {
                        TryRecvError::Empty => NoJob::Empty,
                        TryRecvError::Disconnected => NoJob::Closed,
                    })?,
                    Wait::For(time) => {
                        self.shared.queue.recv_timeout(time).map_err(|e| match e {
                            RecvTimeoutError::Timeout => NoJob::Empty,
                            RecvTimeoutError::Disconnected => NoJob::Closed,
                        })?
                    }
                    Wait::Forever => self.shared.queue.recv().map_err(|_| NoJob::Closed)?,
                },
            };
            // A job cancelled while queued has its outcome already.
            if job.ticket.start() {
                return Ok(job);
            }
        }
    }

    /// Keeps jobs flowing to the worker and records their outcomes in order.
    fn busy(
        &self,
        mut worker: Worker,
        mut in_flight: VecDeque<InFlight>,
        mut backlog: Backlog,
    ) -> State {
        let mut peak = None;
        // The per-tick checks also run while answers keep coming (quick pipelined
        // tasks), at least once a tick.
        let mut last_watch = Instant::now();
        loop {
            if !worker.dead {
                self.top_up(&mut worker, &mut in_flight, &mut backlog);
            }
            let Some(head) = in_flight.front_mut() else {
                if self.is_due_for_recycling(&worker) {
                    self.retire(worker);
                    return State::Exited { backlog };
                }
                return State::Idle { worker, backlog };
            };
            // Before `Ready`, no task has started: only the start deadline counts.
            let deadline = match worker.not_ready {
                Some(not_ready) => Some(not_ready.deadline),
                None => head.job.options.timeout.map(|t| worker.head_started + t),
            };
            let wait = deadline.map_or(TICK, |d| {
                d.saturating_duration_since(Instant::now()).min(TICK)
            });
            let answer = match worker.link.recv_timeout(wait) {
                Ok(frame) => self.answer(&mut worker, head, frame),
                Err(RecvError::Closed) => Answer::Lost(self.crashed(&mut worker, peak)),
                Err(RecvError::Broken(message)) => {
                    worker.process.kill();
                    Answer::Lost(TaskError::Link { message })
                }
                Err(RecvError::Timeout) => {
                    last_watch = Instant::now();
                    match self.watch(&mut worker, &mut in_flight, &mut peak) {
                        Some(error) => Answer::Lost(error),
                        None => continue,
                    }
                }
            };
            let lost = match self.settle(&mut worker, &mut in_flight, answer) {
                Some(error) => error,
                None => {
                    if in_flight.is_empty() || last_watch.elapsed() < TICK {
                        continue;
                    }
                    last_watch = Instant::now();
                    match self.watch(&mut worker, &mut in_flight, &mut peak) {
                        Some(error) => error,
                        None => continue,
                    }
                }
            };
            // The worker is gone (reaped), but answers it sent before it went may still
            // be unread: take them first, so finished tasks keep their outcomes.
            let target = in_flight.front().map(|f| f.job.id);
            let was_not_ready = worker.not_ready;
            self.drain(&mut worker, &mut in_flight);
            // Still not ready, or killed for its start (deadline, bad frame) although a
            // `Ready` turned up in the drain: a failed start either way.
            let failed_start = loss::is_failed_start(
                was_not_ready.is_none(),
                worker.not_ready.is_none(),
                lost.is_crash(),
            );
            if let (true, Some(not_ready)) = (failed_start, was_not_ready.or(worker.not_ready)) {
                // Lost before `Ready`: a failed start. No task ran; all go back.
                let message = match lost {
                    TaskError::WorkerStart { message } => message,
                    TaskError::Protocol { .. } => {
                        "worker answered its set-up with a malformed frame".to_owned()
                    }
                    TaskError::Link { message } => message,
                    _ => self.died_starting(&mut worker),
                };
                drop(worker);
                for rest in in_flight.into_iter().rev() {
                    backlog.push_front(rest.job);
                }
                return self.start_failed(not_ready.failures, message, backlog);
            }
            // The running task takes the error: the head's (for a batch, the journal,
            // read now that the worker is dead, says which of its tasks had finished).
            // The tasks behind it never started and go back to the backlog, in order,
            // for the next worker. If the head's answer turned up and the worker was
            // killed for that head (deadline, cancel, memory), the task it had moved
            // on to is not to blame and runs again.
            let journal = worker.journal.take();
            drop(worker);
            let Some(head) = in_flight.pop_front() else {
                return State::Exited { backlog };
            };
            let was_head = Some(head.job.id) == target;
            for rest in in_flight.into_iter().rev() {
                backlog.push_front(rest.job);
            }
            let Some(mut crashed) = self.salvage(head, journal.as_ref(), &mut backlog) else {
                return State::Exited { backlog };
            };
            let verdict = loss::verdict(Loss {
                crash: lost.is_crash(),
                retryable: lost.is_retryable(),
                was_head,
                attempts: crashed.attempts,
                retries: crashed.options.retries,
                terminating: self.shared.is_terminating(),
            });
            match verdict {
                Verdict::Closed => {
                    crashed.fail(TaskError::PoolClosed);
                    return State::Terminating {
                        worker: None,
                        backlog,
                    };
                }
                Verdict::Requeue => backlog.push_front(crashed),
                Verdict::Retry => {
                    crashed.attempts += 1;
                    backlog.push_front(crashed);
                }
                Verdict::Fail => crashed.fail(lost),
            }
            return State::Exited { backlog };
        }
    }

    /// Records what an answer meant for the head job; `Some` with the error when the
    /// worker is lost.
    fn settle(
        &self,
        worker: &mut Worker,
        in_flight: &mut VecDeque<InFlight>,
        answer: Answer,
    ) -> Option<TaskError> {
        match answer {
            Answer::Lost(error) => return Some(error),
            Answer::Ready => {
                // A `Skipped` for a job told to skip before `Ready` comes now: its
                // grace (see `watch`) counts from here.
                for waiting in in_flight.iter_mut() {
                    if let Some(sent) = &mut waiting.skip_sent {
                        *sent = Instant::now();
                    }
                }
            }
            Answer::Outcome(outcome) => {
                let done = in_flight.pop_front().expect("a head");
                done.job.complete(outcome);
                worker.finished(1);
            }
            Answer::Batch { count, last: true } => {
                let done = in_flight.pop_front().expect("a head");
                done.job.finish();
                worker.finished(count);
            }
            Answer::Batch { count, last: false } => worker.progressed(count),
            Answer::Skipped => {
                let done = in_flight.pop_front().expect("a head");
                done.job.fail(TaskError::Cancelled);
                worker.finished(0);
            }
        }
        None
    }

    /// Takes the answers a lost worker sent before it went and that are still unread.
    fn drain(&self, worker: &mut Worker, in_flight: &mut VecDeque<InFlight>) {
        while let Some(head) = in_flight.front_mut() {
            let Ok(frame) = worker.link.recv_timeout(Duration::ZERO) else {
                return;
            };
            let answer = self.answer(worker, head, frame);
            if self.settle(worker, in_flight, answer).is_some() {
                return;
            }
        }
    }

    /// After the worker running `head` died: delivers what the journal shows finished
    /// of a batch, puts the batch's tasks after the running one in the backlog, and
    /// returns the job of the task that was running (`None` if none was: the batch had
    /// finished).
    fn salvage(
        &self,
        head: InFlight,
        journal: Option<&Journal>,
        backlog: &mut Backlog,
    ) -> Option<Job> {
        let InFlight {
            mut job, received, ..
        } = head;
        let id = job.id;
        let Some(batch) = job.batch_mut() else {
            return Some(job);
        };
        let sent = received + batch.len();
        if let Some(found) = journal.and_then(|j| j.recover(id, sent, received)) {
            let count = found.done.saturating_sub(received);
            if count > 0 {
                let records = found.records;
                batch.deliver(Segment::Records { count, records }, None);
            }
        }
        match batch.len() {
            0 => {
                job.finish();
                None
            }
            1 => Some(job),
            _ => {
                let running = job.split_front(1, self.shared.new_id());
                backlog.push_front(job);
                running
            }
        }
    }

    /// How many more tasks this worker may be sent before it is due for recycling.
    fn room(&self, worker: &Worker, in_flight: &VecDeque<InFlight>) -> usize {
        let sent = in_flight.iter().map(|f| f.job.tasks()).sum();
        pipeline::room(self.shared.config.max_tasks_per_worker, worker.tasks, sent)
    }

    /// Cuts a batch down to what this worker may take: at most `room` tasks, and one
    /// at a time if it has no journal (none could be made). The rest waits in the
    /// backlog.
    fn fit(&self, worker: &mut Worker, job: Job, room: usize, backlog: &mut Backlog) -> Job {
        let mut take = job.tasks().min(room.max(1));
        if take > 1 && !self.ensure_journal(worker) {
            take = 1;
        }
        self.first_tasks(job, take, backlog)
    }

    /// The first `take` tasks of a batch as a job of their own, the rest back at the
    /// front of the backlog; a job of `take` tasks or fewer as it is.
    fn first_tasks(&self, mut job: Job, take: usize, backlog: &mut Backlog) -> Job {
        if take < job.tasks() {
            if let Some(front) = job.split_front(take, self.shared.new_id()) {
                backlog.push_front(job);
                return front;
            }
        }
        job
    }

    /// Gives the worker its batch journal if it has none; `false` if it cannot have one.
    fn ensure_journal(&self, worker: &mut Worker) -> bool {
        if worker.journal.is_some() {
            return true;
        }
        let Ok(journal) = Journal::create() else {
            return false;
        };
        let frame = frame::header_only(&Request::Journal);
        match worker
            .link
            .send_with_fds([&frame, &[]], &[journal.memory().fd()])
        {
            Ok(()) => {
                worker.journal = Some(journal);
                true
            }
            Err(_) => {
                worker.dead = true;
                false
            }
        }
    }

    /// Sends more jobs while the worker's share of queued work is short: how many ride
    /// behind the running one depends on how long tasks have been taking, so quick
    /// tasks are pipelined and long ones are not held back from another slot. A batch
    /// of several tasks is quick work by construction: one more always rides behind it.
    fn top_up(
        &self,
        worker: &mut Worker,
        in_flight: &mut VecDeque<InFlight>,
        backlog: &mut Backlog,
    ) {
        let batched = |f: &InFlight| f.job.tasks() > 1 && f.job.is_batch();
        let mut depth = pipeline::depth(worker.per_task, in_flight.iter().any(batched));
        let first_new = in_flight.len();
        while in_flight.len() < depth && !self.shared.is_terminating() {
            let room = self.room(worker, in_flight);
            if room == 0 {
                break;
            }
            let Some(job) = self.next_job(backlog, false) else {
                break;
            };
            // At most one job with shared buffers in a worker's pipeline: each holds up
            // to 32 descriptors in the worker, which must not run out of them.
            if job.has_fds() && in_flight.iter().any(|f| f.job.has_fds()) {
                backlog.push_front(job);
                break;
            }
            let job = self.fit(worker, job, room, backlog);
            in_flight.push_back(InFlight::new(job));
            if in_flight.back().is_some_and(batched) {
                depth = pipeline::depth(worker.per_task, true);
            }
        }
        let new = in_flight.iter().skip(first_new).map(|f| &f.job);
        if send_jobs(&mut worker.link, new).is_err() {
            worker.dead = true;
        }
    }

    /// One tick without an answer: cancellations, the deadline, the memory limit, and a
    /// worker that died without closing its socket. `Some` when the worker is gone.
    fn watch(
        &self,
        worker: &mut Worker,
        in_flight: &mut VecDeque<InFlight>,
        peak: &mut Option<u64>,
    ) -> Option<TaskError> {
        let config = &self.shared.config;
        if self.shared.is_terminating() {
            worker.process.kill();
            return Some(TaskError::PoolClosed);
        }
        // A new worker's output is read from its first tick on.
        worker.process.start_output();
        if let Some(not_ready) = worker.not_ready {
            if Instant::now() >= not_ready.deadline {
                worker.process.kill();
                return Some(TaskError::WorkerStart {
                    message: self.not_ready_in_time(),
                });
            }
            // A job cancelled before the worker is ready is skipped by it, after `Ready`.
            for waiting in in_flight.iter_mut() {
                if waiting.skip_sent.is_none() && waiting.job.ticket.is_cancel_requested() {
                    let skip = frame::header_only(&Request::Skip { id: waiting.job.id });
                    let _ = worker.link.send(&skip);
                    waiting.skip_sent = Some(Instant::now());
                }
            }
            if worker.dead || worker.process.try_wait().is_some() {
                return Some(self.crashed(worker, *peak));
            }
            return None;
        }
        let head = in_flight.front_mut().expect("a head");
        // A batch is timed task by task: the journal shows when the next one started.
        if let Some(done) = worker
            .journal
            .as_ref()
            .and_then(|j| j.progress(head.job.id))
        {
            if done > head.seen {
                head.seen = done;
                worker.head_started = Instant::now();
            }
        }
        // A head told to skip answers `Skipped` unless it had started: give the answer
        // a couple of ticks before killing for it.
        let skip_pending = head.skip_sent.is_some_and(|at| at.elapsed() < 2 * TICK);
        if head.job.ticket.is_cancel_requested() && !skip_pending {
            worker.process.kill();
            return Some(TaskError::Cancelled);
        }
        for waiting in in_flight.iter_mut().skip(1) {
            if waiting.skip_sent.is_none() && waiting.job.ticket.is_cancel_requested() {
                let skip = frame::header_only(&Request::Skip { id: waiting.job.id });
                let _ = worker.link.send(&skip);
                waiting.skip_sent = Some(Instant::now());
            }
        }
        if let Some(timeout) = in_flight.front().and_then(|head| head.job.options.timeout) {
            if worker.head_started.elapsed() >= timeout {
                worker.process.terminate(config.kill_grace);
                return Some(TaskError::TimedOut {
                    after: timeout,
                    stderr: worker.process.stderr_tail(TAIL_WAIT),
                });
            }
        }
        if let Some(limit) = config.max_memory {
            if let Some(rss) = sys::resident_bytes(worker.process.pid()) {
                *peak = (*peak).max(Some(rss));
                if rss > limit {
                    worker.process.kill();
                    return Some(TaskError::MemoryLimit {
                        limit,
                        used: Some(rss),
                        stderr: worker.process.stderr_tail(TAIL_WAIT),
                    });
                }
            }
        }
        // Dead, yet the socket is open: something it spawned holds it. The group kill
        // in `crashed` takes that down too.
        if worker.dead || worker.process.try_wait().is_some() {
            return Some(self.crashed(worker, *peak));
        }
        None
    }

    /// The queue is closed and drained (retire the worker), or the pool is terminating
    /// (kill it). Jobs still owed an outcome end in `PoolClosed`.
    fn terminating(&self, worker: Option<Worker>, backlog: Backlog) {
        for job in backlog {
            job.fail(TaskError::PoolClosed);
        }
        if let Some(worker) = worker {
            if self.shared.is_terminating() {
                drop(worker); // killed and reaped by WorkerProcess::drop
            } else {
                self.retire(worker);
            }
        }
    }

    /// Starts a worker (or takes one forked when the pool was built) and sends it its
    /// `Setup`. After a start that did not fail, a single task already waiting (of a
    /// batch, its first) goes into the link too, before the worker's process is known
    /// (the fork server's answer takes a while, and the worker reads its task as soon
    /// as it is ready); that job comes back too.
    fn start(&self, failures: u32, backlog: &mut Backlog) -> (Result<Worker, String>, Option<Job>) {
        let program = || self.shared.spawner.program();
        let (mut link, spawning) = match self.shared.spawner.take_prestarted() {
            // Forked already, `Setup` written into its link before the fork.
            Some(prestarted) => prestarted,
            None => {
                let (mut link, worker_end) = match ParentEnd::pair() {
                    Ok(pair) => pair,
                    Err(e) => return (Err(format!("cannot make a link socket: {e}")), None),
                };
                // Sent before the worker exists, so it is there to read as soon as the
                // worker starts. (A context larger than the socket's buffer goes out in
                // part now, the rest while the slot waits for answers.)
                if let Err(e) = link.send(&self.shared.config.setup_frame()) {
                    return (Err(format!("cannot write to a new link socket: {e}")), None);
                }
                match self.shared.spawner.start(worker_end) {
                    Ok(spawning) => (link, spawning),
                    Err(e) => return (Err(format!("cannot run {}: {e}", program())), None),
                }
            }
        };
        // A slot whose starts fail takes no job from the others until one succeeds.
        let mut sent = None;
        if failures == 0 {
            if let Some(job) = self.next_job(backlog, false) {
                // Of a batch, the first task only: a worker takes more at once only
                // with a batch journal (see `fit`); the rest goes out, cut to its
                // room, once that task is answered.
                let job = self.first_tasks(job, 1, backlog);
                if send_jobs(&mut link, [&job]).is_err() {
                    backlog.push_front(job);
                } else {
                    sent = Some(job);
                }
            }
        }
        match self.shared.spawner.finish(spawning) {
            Ok(process) => (Ok(self.adopt(link, process)), sent),
            Err(e) => {
                let message = format!("cannot run {}: {e}", program());
                let sent = sent.and_then(|job| recall(&mut link, job, &message));
                (Err(message), sent)
            }
        }
    }

    /// The slot's worker, once its process is known.
    fn adopt(&self, link: ParentEnd, process: WorkerProcess) -> Worker {
        self.shared.track_readers(process.readers());
        Worker {
            process,
            link,
            tasks: 0,
            start_failures: 0,
            head_started: Instant::now(),
            per_task: None,
            dead: false,
            journal: None,
            not_ready: None,
        }
    }

    /// Waits, with the start deadline, for a just-started worker's `Ready`.
    fn await_ready(&self, worker: &mut Worker) -> Result<(), String> {
        let deadline = Instant::now() + self.shared.config.start_timeout;
        loop {
            match worker.link.recv_timeout(TICK) {
                Ok(frame) => return frame::ready_protocol(&frame).map_err(|p| self.not_ready(p)),
                Err(RecvError::Closed) => return Err(self.died_starting(worker)),
                Err(RecvError::Broken(message)) => return Err(message),
                // Its output is read from the first tick on, as in Busy.
                Err(RecvError::Timeout) => worker.process.start_output(),
            }
            if self.shared.is_terminating() {
                return Err("pool terminated during start-up".to_owned());
            }
            // Dead, yet the socket is open: something it started holds the other end.
            if worker.process.try_wait().is_some() {
                return Err(self.died_starting(worker));
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready_in_time());
            }
        }
    }

    /// Why a worker's answer to its set-up was no `Ready` of this protocol: it was of
    /// protocol `Some(n)`, or no `Ready` at all.
    fn not_ready(&self, protocol: Option<u32>) -> String {
        match protocol {
            Some(theirs) => format!(
                "worker {} speaks procpool protocol {theirs}, this pool speaks protocol {} \
                 (procpool {}): build the worker from the same procpool version",
                self.shared.spawner.program(),
                frame::PROTOCOL,
                frame::RELEASE,
            ),
            None => "worker answered its set-up with a malformed frame".to_owned(),
        }
    }

    fn not_ready_in_time(&self) -> String {
        format!(
            "worker {} was not ready within {:?}",
            self.shared.spawner.program(),
            self.shared.config.start_timeout
        )
    }

    /// Why a worker ended while idle before its first task: its exit and its first
    /// words.
    fn died_idle(&self, worker: &mut Worker) -> String {
        let status = worker.process.wait_or_kill(self.shared.config.kill_grace);
        let said = worker.process.first_stderr_line(TAIL_WAIT);
        format!(
            "worker {} {} while idle, before its first task{}",
            self.shared.spawner.program(),
            describe_status(status),
            said.map(|l| format!("; its first stderr line: {l}"))
                .unwrap_or_default()
        )
    }

    /// Why a worker ended before it was ready: its exit and its first words, which
    /// usually say why (a backtrace may follow and fill the tail).
    fn died_starting(&self, worker: &mut Worker) -> String {
        let status = worker.process.wait_or_kill(self.shared.config.kill_grace);
        let said = worker.process.first_stderr_line(TAIL_WAIT);
        format!(
            "worker {} {} before it was ready{}",
            self.shared.spawner.program(),
            describe_status(status),
            said.map(|l| format!("; its first stderr line: {l}"))
                .unwrap_or_default()
        )
    }

    /// Reads a response frame for the head job. A frame that breaks the protocol costs
    /// the worker.
    fn answer(&self, w: &mut Worker, head: &mut InFlight, mut frame: Vec<u8>) -> Answer {
        let id = head.job.id;
        let expected = match (&w.not_ready, head.job.is_batch()) {
            (Some(_), _) => Expected::Ready,
            (None, false) => Expected::Single { id },
            (None, true) => Expected::Batch {
                id,
                left: head.job.tasks(),
            },
        };
        let broken = |w: &mut Worker, message: String| {
            w.process.kill();
            Answer::Lost(TaskError::Protocol { message })
        };
        match classify(&frame, expected) {
            Classified::Broken(message) => broken(w, message),
            Classified::OtherProtocol(theirs) => {
                w.process.kill();
                let message = self.not_ready(Some(theirs));
                Answer::Lost(TaskError::WorkerStart { message })
            }
            Classified::Ready => {
                w.not_ready = None;
                w.head_started = Instant::now();
                w.process.clear_stderr_tail();
                Answer::Ready
            }
            Classified::Output { len, fds: count } => {
                let Some(fds) = w.link.take_fds(count) else {
                    let message =
                        format!("task #{id}'s output came without its {count} descriptors");
                    return broken(w, message);
                };
                frame.truncate(len);
                Answer::Outcome(Ok(Encoded { bytes: frame, fds }))
            }
            Classified::Failure(failure) => {
                let types = head.job.types;
                Answer::Outcome(Err(failure.into_error(|| types.describe())))
            }
            Classified::Skipped => Answer::Skipped,
            Classified::Batch {
                count,
                last,
                nanos,
                len,
            } => {
                let batch = head.job.batch_mut().expect("a batch was expected");
                let timing = last.then_some((nanos, head.received + batch.len()));
                if count > 0 {
                    frame.truncate(len);
                    let records = frame;
                    batch.deliver(Segment::Records { count, records }, timing);
                }
                head.received += count;
                Answer::Batch { count, last }
            }
        }
    }

    /// The worker's link closed or the worker died: reap it and say how it ended.
    fn crashed(&self, w: &mut Worker, peak: Option<u64>) -> TaskError {
        let config = &self.shared.config;
        let status = w.process.wait_or_kill(config.kill_grace);
        let stderr = w.process.stderr_tail(TAIL_WAIT);
        if let Some(limit) = config.max_memory {
            // An allocation refused under the data-segment cap makes the Rust runtime
            // print "memory allocation of N bytes failed" and abort.
            if w.process.saw_allocation_failure() {
                return TaskError::MemoryLimit {
                    limit,
                    used: peak,
                    stderr,
                };
            }
        }
        match (status.signal(), status.code()) {
            (Some(signal), _) => TaskError::Signaled {
                signal,
                name: sys::signal_name(signal),
                core_dumped: status.core_dumped(),
                stderr,
            },
            (None, code) => TaskError::Exited {
                code: code.unwrap_or(-1),
                stderr,
            },
        }
    }

    fn is_due_for_recycling(&self, w: &Worker) -> bool {
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
    fn retire(&self, mut w: Worker) {
        // What it writes on its way out is read by the reaper, as it writes it or
        // once it has ended; a captured stream, which has a thread of its own, from
        // now on (the user's function may be slow, and the reaper must not be).
        w.process.start_captured_output();
        let _ = w.link.send(&frame::header_only(&Request::Shutdown));
        let grace = self.shared.config.kill_grace;
        self.shared.reaper.retire(w.process, grace);
    }

    fn back_off(&self, failures: u32) {
        let pause = (Duration::from_millis(25) * 2u32.saturating_pow(failures)).min(MAX_BACKOFF);
        let until = Instant::now() + pause;
        while Instant::now() < until && !self.shared.is_terminating() {
            thread::sleep(TICK);
        }
    }

    /// Stops respawning. The last slot to give up fails every task still to come, so
    /// none waits forever, until the pool is shut down.
    fn give_up(&self, message: String, backlog: Backlog) {
        let error = TaskError::WorkerStart { message };
        for job in backlog {
            job.fail(error.clone());
        }
        if !self.shared.slot_gave_up() {
            return;
        }
        self.shared.gate.set_broken();
        while let Ok(job) = self.shared.queue.recv() {
            // Already cancelled (a dropped map's batch): nothing is owed.
            if !job.ticket.start() {
                continue;
            }
            job.fail(if self.shared.is_terminating() {
                TaskError::PoolClosed
            } else {
                error.clone()
            });
        }
    }
}

fn describe_status(status: ExitStatus) -> String {
    match (status.signal(), status.code()) {
        (Some(signal), _) => format!("was killed by {}", sys::signal_name(signal)),
        (None, Some(code)) => format!("exited with code {code}"),
        (None, None) => "ended".to_owned(),
    }
}

/// Takes back `job`, sent into the link of a worker whose start then failed (the fork
/// server's answer did not come, so the worker may exist). A `Run` frame not yet all in
/// the socket cannot have been read whole. Otherwise a `Skip` goes after it: a worker
/// reads every frame that has come before it starts a task, and answers `Ready` before
/// it reads any, so if the `Skip` went in whole and the link holds no `Ready` (or holds
/// the `Skipped` answer), the worker had not started the task and now never will, and
/// the job comes back. Otherwise it may have run: it ends in `WorkerStart` (why: `why`)
/// with no retry, since that worker cannot be stopped (its pid is not known) and may
/// still be running it.
fn recall(link: &mut ParentEnd, job: Job, why: &str) -> Option<Job> {
    if !link.is_flushed() {
        return Some(job);
    }
    let skip_arrives = match link.send(&frame::header_only(&Request::Skip { id: job.id })) {
        Ok(()) => link.is_flushed(),
        // The worker's end is closed: nobody is left to read anything.
        Err(e) => matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ),
    };
    let mut ready = false;
    while let Ok(frame) = link.recv_timeout(Duration::ZERO) {
        match frame::decode(&frame) {
            Ok((Response::Skipped { id }, _)) if id == job.id => return Some(job),
            Ok((Response::Ready { .. }, _)) => ready = true,
            _ => {}
        }
    }
    if ready || !skip_arrives {
        job.fail(TaskError::WorkerStart {
            message: format!("{why}; its worker may have started the task"),
        });
        return None;
    }
    Some(job)
}

/// Whether an idle worker is still there to take a job: its link neither closed nor
/// broken, no frame on it (an idle worker has nothing to say; one that speaks breaks
/// the protocol and is replaced), and its process not ended (something it started may
/// hold the link open).
fn idle_worker_lives(worker: &mut Worker) -> bool {
    match worker.link.recv_timeout(Duration::ZERO) {
        Err(RecvError::Timeout) => worker.process.try_wait().is_none(),
        Ok(_) | Err(RecvError::Closed | RecvError::Broken(_)) => false,
    }
}

/// `job`, just sent to a worker with nothing else in flight, is its head job now.
fn busy_with(mut worker: Worker, job: Job, backlog: Backlog) -> State {
    worker.head_started = Instant::now();
    State::Busy {
        worker,
        in_flight: VecDeque::from([InFlight::new(job)]),
        backlog,
    }
}

/// Sends the frames of `jobs` in order: those without descriptors together, in one
/// system call where the socket takes them, each with descriptors on its own.
fn send_jobs<'a>(link: &mut ParentEnd, jobs: impl IntoIterator<Item = &'a Job>) -> io::Result<()> {
    let mut plain: Vec<[&[u8]; 2]> = Vec::new();
    for job in jobs {
        let fds = job.fds();
        if fds.is_empty() {
            plain.push(job.frame());
            continue;
        }
        if !plain.is_empty() {
            link.send_many(&plain)?;
            plain.clear();
        }
        link.send_with_fds(job.frame(), &fds)?;
    }
    if plain.is_empty() {
        return Ok(());
    }
    link.send_many(&plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::WorkerEnd;
    use crate::pool::job::{Encoded, Ticket, Work};

    fn job() -> (Job, Arc<Ticket>) {
        let ticket = Arc::new(Ticket::new(None));
        assert!(ticket.start());
        let job = Job {
            id: 7,
            attempts: 0,
            options: crate::pool::job::JobOptions {
                timeout: None,
                retries: 0,
            },
            ticket: ticket.clone(),
            work: Work::One(Encoded::default()),
            types: crate::task::TaskTypes::pair::<(), ()>(),
        };
        (job, ticket)
    }

    /// The frames a worker end has received, as requests.
    fn requests(worker: &mut WorkerEnd) -> Vec<Request> {
        let mut found = Vec::new();
        while let Some(Some(frame)) = worker.try_recv() {
            found.push(frame::decode::<Request>(&frame).unwrap().0);
        }
        found
    }

    fn not_started(back: Option<Job>) -> bool {
        back.is_some_and(|job| job.id == 7)
    }

    /// Recalled, `job` may have run: it ends in `WorkerStart`, saying why.
    fn may_have_started(back: Option<Job>, ticket: &Ticket) -> bool {
        back.is_none()
            && matches!(ticket.wait(), Err(TaskError::WorkerStart { message })
                if message == "the server died; its worker may have started the task")
    }

    #[test]
    fn a_recalled_job_whose_worker_never_said_ready_did_not_start_and_is_skipped() {
        let (mut link, end) = ParentEnd::pair().unwrap();
        let mut worker = WorkerEnd::new(end).unwrap();
        let (job, ticket) = job();
        assert!(not_started(recall(&mut link, job, "the server died")));
        assert!(!ticket.is_done());
        assert!(matches!(
            requests(&mut worker)[..],
            [Request::Skip { id: 7 }]
        ));
    }

    #[test]
    fn a_recalled_job_whose_worker_is_gone_without_ready_did_not_start() {
        let (mut link, end) = ParentEnd::pair().unwrap();
        drop(end);
        let (job, _) = job();
        assert!(not_started(recall(&mut link, job, "the server died")));
    }

    /// A link whose worker has answered its `Setup`.
    fn link_after_ready() -> (ParentEnd, WorkerEnd) {
        let (link, end) = ParentEnd::pair().unwrap();
        let mut worker = WorkerEnd::new(end).unwrap();
        let ready = Response::Ready {
            protocol: frame::PROTOCOL,
            release: frame::RELEASE.to_owned(),
        };
        worker.send(&frame::header_only(&ready)).unwrap();
        (link, worker)
    }

    #[test]
    fn a_recalled_job_whose_worker_said_ready_may_have_started() {
        let (mut link, _worker) = link_after_ready();
        let (sent, ticket) = job();
        let back = recall(&mut link, sent, "the server died");
        assert!(may_have_started(back, &ticket));
        // Also once the worker is gone: its Ready is still there to read.
        let (mut link, worker) = link_after_ready();
        drop(worker);
        let (sent, ticket) = job();
        let back = recall(&mut link, sent, "the server died");
        assert!(may_have_started(back, &ticket));
    }

    #[test]
    fn a_recalled_job_that_its_worker_skipped_did_not_start() {
        let (mut link, mut worker) = link_after_ready();
        let skipped = frame::header_only(&Response::Skipped { id: 7 });
        worker.send(&skipped).unwrap();
        let (job, _) = job();
        assert!(not_started(recall(&mut link, job, "the server died")));
    }

    #[test]
    fn a_recalled_job_not_all_in_the_socket_did_not_start() {
        let (mut link, _worker) = link_after_ready();
        // More than a socket buffer takes at once: the rest waits in the link.
        link.send(&vec![0u8; 8 << 20]).unwrap();
        assert!(!link.is_flushed());
        let (job, _) = job();
        assert!(not_started(recall(&mut link, job, "the server died")));
    }
}
