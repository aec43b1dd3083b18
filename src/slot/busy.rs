//! The `Greeting` and `Busy` states: waiting for a new worker's `Ready`; keeping jobs
//! flowing to a ready worker, reading its answers, and watching it every tick (cancel,
//! deadline, memory, death, a task that runs too long). A loss goes to `lost.rs`.

use std::collections::VecDeque;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::time::Instant;

use super::answer::{classify, Classified, Expected};
use super::event::ExitCause;
use super::pipeline;
use super::state::{Backlog, State};
use super::supervisor::{Supervisor, TAIL_WAIT, TICK};
use super::worker::{InFlight, Worker};
use crate::error::TaskError;
use crate::link::RecvError;
use crate::pool::job::{Encoded, Job, RawOutcome};
use crate::pool::mailbox::Segment;
use crate::sys;
use crate::wire::batch;
use crate::wire::frame::{self, Request};
use crate::wire::journal::Journal;

/// What happened to the job at the head.
pub(super) enum Answer {
    /// A single task's outcome; the worker lives on.
    Outcome(RawOutcome),
    /// The worker answered for `count` more tasks of a batch (some may have been
    /// delivered before, from its journal); `last` on its final answer.
    Records { count: usize, last: bool },
    /// The worker skipped it, as asked: it was cancelled before it started.
    Skipped,
    /// The worker applied its `Setup`: the head job starts now.
    Ready,
    /// The worker is gone (reaped, or killed for breaking the protocol), with the
    /// error of the task it was running.
    Lost(TaskError),
}

impl Supervisor {
    /// Waits for the `Ready` of a new worker that was sent jobs behind its `Setup`,
    /// by `deadline`, telling it to skip those cancelled meanwhile. Lost before it is
    /// ready, the worker failed its start.
    pub(super) fn greeting(
        &self,
        mut worker: Worker,
        mut in_flight: VecDeque<InFlight>,
        backlog: Backlog,
        deadline: Instant,
    ) -> State {
        let error = loop {
            let wait = deadline.saturating_duration_since(Instant::now()).min(TICK);
            let answer = match worker.link.recv_timeout(wait) {
                Ok(frame) => {
                    let head = in_flight.front_mut().expect("a greeting slot holds a job");
                    self.answer(&mut worker, head, frame, Expected::Ready)
                }
                Err(RecvError::Closed) => Answer::Lost(self.crashed(&mut worker, None)),
                Err(RecvError::Broken(message)) => {
                    worker.process.kill();
                    Answer::Lost(TaskError::Link { message })
                }
                Err(RecvError::Timeout) => {
                    match self.watch_greeting(&mut worker, &mut in_flight, deadline) {
                        Some(error) => Answer::Lost(error),
                        None => continue,
                    }
                }
            };
            match answer {
                Answer::Ready => {
                    let head = &mut in_flight.front_mut().expect("a greeting slot holds a job");
                    self.job_started(&worker, &mut head.job);
                    // A `Skipped` for a job told to skip before `Ready` comes now: its
                    // grace (see `watch`) counts from here.
                    for waiting in &mut in_flight {
                        if let Some(sent) = &mut waiting.skip_sent {
                            *sent = Instant::now();
                        }
                    }
                    return State::Busy {
                        worker,
                        in_flight,
                        backlog,
                    };
                }
                Answer::Lost(error) => break error,
                // `classify` finds nothing else where a `Ready` is expected.
                _ => unreachable!("only a Ready or a loss answers a set-up"),
            }
        };
        State::Lost {
            worker,
            in_flight,
            backlog,
            error,
            ready: false,
        }
    }

    /// Keeps jobs flowing to the worker and records their outcomes in order.
    pub(super) fn busy(
        &self,
        mut worker: Worker,
        mut in_flight: VecDeque<InFlight>,
        mut backlog: Backlog,
    ) -> State {
        let mut peak = None;
        // The per-tick checks also run while answers keep coming (quick pipelined
        // tasks), at least once a tick.
        let mut last_watch = Instant::now();
        let error = loop {
            if self
                .top_up(&mut worker, &mut in_flight, &mut backlog)
                .is_err()
            {
                break self.crashed(&mut worker, peak);
            }
            let Some(head) = in_flight.front_mut() else {
                if let Some(&id) = worker.taken_back.front() {
                    match self.refusal(&mut worker, id) {
                        Ok(()) => continue,
                        Err(error) => break error,
                    }
                }
                if self.is_due_for_recycling(&worker) {
                    self.retire(worker, ExitCause::Retired);
                    return State::Exited { backlog };
                }
                return State::Idle { worker, backlog };
            };
            // A limit too long to be an instant (`Duration::MAX`, say) is none.
            let timeout = head.job.options.timeout;
            let deadline = timeout.and_then(|t| worker.head_started.checked_add(t));
            let wait = deadline.map_or(TICK, |d| {
                d.saturating_duration_since(Instant::now()).min(TICK)
            });
            let answer = match worker.link.recv_timeout(wait) {
                Ok(frame) => {
                    let expected = expected(head, true);
                    self.answer(&mut worker, head, frame, expected)
                }
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
            if let Some(error) = self.settle(&mut worker, &mut in_flight, answer) {
                break error;
            }
            if in_flight.is_empty() || last_watch.elapsed() < TICK {
                continue;
            }
            last_watch = Instant::now();
            if let Some(error) = self.watch(&mut worker, &mut in_flight, &mut peak) {
                break error;
            }
        };
        State::Lost {
            worker,
            in_flight,
            backlog,
            error,
            ready: true,
        }
    }

    /// Records what an answer meant for the head job; `Some` with the error when the
    /// worker is lost.
    pub(super) fn settle(
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
                let pid = Some(worker.process.pid());
                let since = Some(worker.head_started);
                self.running(0);
                let tasks = done.job.range();
                let result = outcome.as_ref().map(drop);
                self.telemetry()
                    .finished(self.slot, pid, tasks, result, since, &done.job.trace);
                done.job.complete(outcome);
                worker.finished(1);
            }
            Answer::Records { count, last } => {
                if !last {
                    worker.progressed(count);
                    return None;
                }
                let done = in_flight.pop_front().expect("a head");
                if done.job.tasks() > 0 {
                    // Cut short: the worker began none of the tasks left.
                    self.shared.give_back(done.job);
                } else {
                    done.job.finish();
                }
                worker.finished(count);
            }
            Answer::Skipped => {
                let done = in_flight.pop_front().expect("a head");
                self.running(0);
                if done.job.ticket.is_cancel_requested() {
                    let pid = Some(worker.process.pid());
                    self.fail(done.job, pid, TaskError::Cancelled);
                } else {
                    // Refused, not cancelled: the worker saw it taken back as the
                    // slot gave up taking it back. It did not run; another worker may.
                    self.shared.give_back(done.job);
                }
                worker.skipped();
            }
        }
        match in_flight.front_mut() {
            Some(next) => self.job_started(worker, &mut next.job),
            None => self.running(0),
        }
        None
    }

    /// How many more tasks this worker may be sent before it is due for recycling.
    pub(super) fn room(&self, worker: &Worker, in_flight: &VecDeque<InFlight>) -> usize {
        let sent = in_flight.iter().map(|f| f.job.tasks()).sum();
        pipeline::room(self.shared.config.max_tasks_per_worker, worker.tasks, sent)
    }

    /// Cuts a batch down to what this worker may take: at most `room` tasks, and one
    /// at a time if it has no journal (none could be made). The rest waits in the
    /// backlog.
    pub(super) fn fit(
        &self,
        worker: &mut Worker,
        job: Job,
        room: usize,
        backlog: &mut Backlog,
    ) -> Job {
        let mut take = job.tasks().min(room.max(1));
        if take > 1 && !self.ensure_journal(worker) {
            take = 1;
        }
        self.first_tasks(job, take, backlog)
    }

    /// The first `take` tasks of a batch as a job of their own, the rest back at the
    /// front of the backlog; a job of `take` tasks or fewer as it is.
    pub(super) fn first_tasks(&self, mut job: Job, take: usize, backlog: &mut Backlog) -> Job {
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
            // The next send fails too, and settles what the failure means.
            Err(_) => false,
        }
    }

    /// Sends more jobs while the worker's share of queued work is short: how many ride
    /// behind the running one depends on how long tasks have been taking, so quick
    /// tasks are pipelined and long ones are not held back from another slot. A batch
    /// of several tasks is quick work by construction: one more always rides behind it.
    /// `Err` if the send failed: the worker is lost.
    fn top_up(
        &self,
        worker: &mut Worker,
        in_flight: &mut VecDeque<InFlight>,
        backlog: &mut Backlog,
    ) -> io::Result<()> {
        // Jobs taken back from behind a long task are answered `Skipped` first; the
        // refusal stands until then (see `wire::journal`).
        if !worker.taken_back.is_empty() {
            return Ok(());
        }
        let batched = |f: &InFlight| f.job.tasks() > 1 && f.job.is_batch();
        let mut depth = pipeline::depth(worker.per_task, in_flight.iter().any(batched));
        let first_new = in_flight.len();
        while in_flight.len() < depth && !self.shared.is_terminating() {
            let room = self.room(worker, in_flight);
            if room == 0 {
                break;
            }
            let Some(job) = self.next_job(backlog) else {
                break;
            };
            // The descriptors of a worker's pipeline are bounded: the worker holds them
            // all, and must not run out.
            let held = in_flight.iter().map(|f| f.job.fd_count()).sum();
            if !pipeline::fds_fit(held, job.fd_count()) {
                backlog.push_front(job);
                break;
            }
            // A job behind another is numbered in the worker's journal, so it can be
            // taken back if the one before it runs too long (without a journal, it
            // cannot be, and waits its turn).
            if !in_flight.is_empty() {
                self.ensure_journal(worker);
            }
            let job = self.fit(worker, job, room, backlog);
            in_flight.push_back(InFlight::new(job));
            if in_flight.back().is_some_and(batched) {
                depth = pipeline::depth(worker.per_task, true);
            }
        }
        // Into an empty pipeline, the first job sent runs at once: named before it can.
        if let (0, Some(head)) = (first_new, in_flight.front()) {
            worker.process.running(head.job.name);
        }
        worker.send(in_flight.iter_mut().skip(first_new))?;
        // Into an empty pipeline: the first job sent is the one the worker runs now.
        if let (0, Some(head)) = (first_new, in_flight.front_mut()) {
            worker.head_started = Instant::now();
            self.job_started(worker, &mut head.job);
        }
        Ok(())
    }

    /// One tick of a greeting slot without an answer: the start deadline, jobs
    /// cancelled meanwhile (the worker skips them after its `Ready`), and a worker that
    /// died without closing its socket. `Some` when the worker is gone.
    fn watch_greeting(
        &self,
        worker: &mut Worker,
        in_flight: &mut VecDeque<InFlight>,
        deadline: Instant,
    ) -> Option<TaskError> {
        if self.shared.is_terminating() {
            worker.process.kill();
            return Some(TaskError::PoolClosed);
        }
        // A new worker's output is read from its first tick on.
        worker.process.start_output();
        if Instant::now() >= deadline {
            worker.process.kill();
            return Some(TaskError::WorkerStart {
                message: self.not_ready_in_time(),
            });
        }
        tell_cancelled_to_skip(worker, in_flight.iter_mut());
        if worker.process.try_wait().is_some() {
            return Some(self.crashed(worker, None));
        }
        None
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
        worker.process.start_output();
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
            // The running task takes long: what finished before it reaches the caller
            // now, not when the worker next answers.
            if worker.head_started.elapsed() >= TICK {
                self.deliver_finished(worker, head);
            }
        }
        // A head told to skip answers `Skipped` unless it had started: give the answer
        // a couple of ticks before killing for it.
        let skip_pending = head.skip_sent.is_some_and(|at| at.elapsed() < 2 * TICK);
        if head.job.ticket.is_cancel_requested() && !skip_pending {
            worker.process.kill();
            return Some(TaskError::Cancelled);
        }
        tell_cancelled_to_skip(worker, in_flight.iter_mut().skip(1));
        if let Some(timeout) = in_flight.front().and_then(|head| head.job.options.timeout) {
            if worker.head_started.elapsed() >= timeout {
                worker.process.terminate(config.kill_grace);
                return Some(TaskError::TimedOut {
                    after: timeout,
                    stderr: worker.process.stderr_tail(TAIL_WAIT),
                });
            }
        }
        if pipeline::take_back_due(worker.head_started.elapsed(), worker.per_task) {
            self.cut(worker, &mut in_flight[0]);
            if in_flight.len() > 1 {
                self.take_back(worker, in_flight);
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
        if worker.process.try_wait().is_some() {
            return Some(self.crashed(worker, *peak));
        }
        None
    }

    /// Reads a response frame, `expected` for the head job. A frame that breaks the
    /// protocol costs the worker.
    pub(super) fn answer(
        &self,
        w: &mut Worker,
        head: &mut InFlight,
        mut frame: Vec<u8>,
        expected: Expected,
    ) -> Answer {
        let id = head.job.id;
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
            Classified::Records {
                count,
                failures,
                last,
                nanos,
                len,
            } => {
                // Records already delivered from the journal come first: skipped.
                let overlap = (head.received - head.answered).min(count);
                head.answered += count;
                let timing = last.then_some((nanos, head.answered));
                let fresh = count - overlap;
                if fresh > 0 {
                    frame.truncate(len);
                    let skip = batch::prefix_len(&frame, overlap).expect("checked records");
                    frame.drain(..skip);
                    // Counted in the frame, overlap included: recounted without it.
                    let failures = (overlap == 0).then_some(failures);
                    let since = Some(w.head_started);
                    let segment = Segment::Records {
                        count: fresh,
                        records: frame,
                    };
                    self.running(head.job.tasks() - fresh);
                    let pid = w.process.pid();
                    self.deliver(pid, &mut head.job, segment, failures, since, timing);
                }
                head.received += fresh;
                Answer::Records { count, last }
            }
        }
    }

    /// Hands the records of the next tasks of batch `job` (run on worker `pid`) to its
    /// map, counted and told first. `failures`: how many records are failures, if
    /// known; `since`: when they began, as far as the slot can tell (the answer before),
    /// if it can; `timing`: the batch's own, on its final answer.
    pub(super) fn deliver(
        &self,
        pid: u32,
        job: &mut Job,
        segment: Segment,
        failures: Option<usize>,
        since: Option<Instant>,
        timing: Option<(u64, usize)>,
    ) {
        if let Segment::Records { count, records } = &segment {
            let tasks = job.range().first(*count);
            let types = job.types;
            self.telemetry().answered(
                self.slot, pid, tasks, records, failures, types, since, &job.trace,
            );
        }
        if let Some(batch) = job.batch_mut() {
            batch.deliver(segment, timing);
        }
    }

    /// The worker's link closed or the worker died: reap it and say how it ended.
    pub(super) fn crashed(&self, w: &mut Worker, peak: Option<u64>) -> TaskError {
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
}

/// What the slot waits for from a worker (`ready`: it has said `Ready`) whose head job
/// is `head`.
pub(super) fn expected(head: &InFlight, ready: bool) -> Expected {
    let id = head.job.id;
    match (ready, head.job.is_batch()) {
        (false, _) => Expected::Ready,
        (true, false) => Expected::Single { id },
        (true, true) => Expected::Batch {
            id,
            // Those delivered from its journal, the worker has yet to answer for.
            left: head.job.tasks() + (head.received - head.answered),
            may_end_early: head.cut,
        },
    }
}

/// Tells the worker to skip each of `waiting` cancelled since it was sent (it skips a
/// job it has not started; see `watch` for one that has).
fn tell_cancelled_to_skip<'a>(
    worker: &mut Worker,
    waiting: impl Iterator<Item = &'a mut InFlight>,
) {
    for job in waiting {
        if job.skip_sent.is_none() && job.job.ticket.is_cancel_requested() {
            let skip = frame::header_only(&Request::Skip { id: job.job.id });
            let _ = worker.link.send(&skip);
            job.skip_sent = Some(Instant::now());
        }
    }
}
