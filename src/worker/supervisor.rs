//! The parent-side supervisor of one worker slot.
//!
//! One thread per slot owns the slot's worker process outright and moves it through an
//! explicit lifecycle:
//!
//! ```text
//! Starting ──hello──▶ Idle ──job──▶ Busy{deadline} ──output/failure──▶ Idle
//!    │ fails N times                  │ crash, timeout, cancel, memory, bad frame
//!    ▼                                ▼
//! GaveUp                          Exited ──▶ Starting (a fresh worker)
//! Idle ──queue closed──▶ Terminating ──▶ Exited
//! ```
//!
//! While Busy it waits for the response in short ticks, so cancellation, the deadline,
//! the memory limit and a worker that died without closing its socket are all noticed
//! within one tick. The outcome of the job is decided here, exactly once.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::process::WorkerProcess;
use crate::error::{Side, TaskError};
use crate::link::{ParentEnd, RecvError};
use crate::pool::{Job, Shared};
use crate::sys;
use crate::wire::frame::{self, Failure, Request, Response};

/// How often a busy supervisor looks at cancellation, deadline, memory and liveness.
const TICK: Duration = Duration::from_millis(10);
/// How long a crash report waits for the dead worker's stderr to drain.
const TAIL_WAIT: Duration = Duration::from_millis(250);
/// Longest pause between two start attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A started worker: its process and its link.
#[derive(Debug)]
struct Worker {
    process: WorkerProcess,
    link: ParentEnd,
    tasks: u64,
}

/// Where a slot is in its worker's lifecycle; each state owns what it needs.
enum State {
    /// No worker yet; `failures` failed starts in a row so far.
    Starting { failures: u32, retry: Option<Job> },
    /// A worker ready for a job.
    Idle { worker: Worker, retry: Option<Job> },
    /// A worker running `job` (its deadline is kept while it runs).
    Busy { worker: Worker, job: Job },
    /// The worker is gone and reaped; a job may be held to run again on the next one.
    Exited { retry: Option<Job> },
    /// The pool is closing: last rites for the worker and any held job.
    Terminating {
        worker: Option<Worker>,
        retry: Option<Job>,
    },
    /// Starting failed `max_start_failures` times in a row.
    GaveUp { message: String, retry: Option<Job> },
}

/// How a job left the Busy state.
enum Step {
    /// The worker answered and lives on.
    Answered(Result<Vec<u8>, TaskError>),
    /// The worker is gone (and reaped); the error says why.
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
            retry: None,
        };
        loop {
            state = match state {
                State::Starting { failures, retry } => self.starting(failures, retry),
                State::Idle { worker, retry } => self.idle(worker, retry),
                State::Busy { worker, job } => self.busy(worker, job),
                State::Exited { retry } => State::Starting { failures: 0, retry },
                State::Terminating { worker, retry } => return self.terminating(worker, retry),
                State::GaveUp { message, retry } => return self.give_up(message, retry),
            };
        }
    }

    /// A slot always has a warm worker before it takes a job.
    fn starting(&self, failures: u32, retry: Option<Job>) -> State {
        if self.shared.is_terminating() {
            return State::Terminating {
                worker: None,
                retry,
            };
        }
        match self.start() {
            Ok(worker) => State::Idle { worker, retry },
            Err(_) if self.shared.is_terminating() => State::Terminating {
                worker: None,
                retry,
            },
            Err(message) if failures + 1 >= self.shared.config.max_start_failures => {
                State::GaveUp { message, retry }
            }
            Err(_) => {
                self.back_off(failures + 1);
                State::Starting {
                    failures: failures + 1,
                    retry,
                }
            }
        }
    }

    /// Takes the next job: the one held for a retry, else one from the queue.
    fn idle(&self, worker: Worker, retry: Option<Job>) -> State {
        if self.shared.is_terminating() {
            return State::Terminating {
                worker: Some(worker),
                retry,
            };
        }
        let job = match retry {
            // A retried job is already Running; only a cancel may have come since.
            Some(job) if job.ticket.is_cancel_requested() => {
                job.ticket.complete(Err(TaskError::Cancelled));
                return State::Idle {
                    worker,
                    retry: None,
                };
            }
            Some(job) => job,
            None => match self.shared.queue.recv() {
                Ok(job) if job.ticket.start() => job,
                // Cancelled while queued: its outcome is final already.
                Ok(_) => {
                    return State::Idle {
                        worker,
                        retry: None,
                    }
                }
                Err(_) => {
                    return State::Terminating {
                        worker: Some(worker),
                        retry: None,
                    }
                }
            },
        };
        if self.shared.is_terminating() {
            job.ticket.complete(Err(TaskError::PoolClosed));
            return State::Terminating {
                worker: Some(worker),
                retry: None,
            };
        }
        State::Busy { worker, job }
    }

    /// Runs the job on the worker and records its outcome, unless it is to be retried.
    fn busy(&self, mut worker: Worker, mut job: Job) -> State {
        match self.execute(&mut worker, &job) {
            Step::Answered(outcome) => {
                job.ticket.complete(outcome);
                worker.tasks += 1;
                if !self.is_due_for_recycling(&worker) {
                    return State::Idle {
                        worker,
                        retry: None,
                    };
                }
                self.retire(worker);
                State::Exited { retry: None }
            }
            Step::Lost(error) => {
                drop(worker); // already reaped
                if error.is_retryable() && job.attempts < self.shared.config.retries {
                    job.attempts += 1;
                    return State::Exited { retry: Some(job) };
                }
                job.ticket.complete(Err(error));
                State::Exited { retry: None }
            }
        }
    }

    /// The queue is closed and drained (retire the worker), or the pool is terminating
    /// (kill it).
    fn terminating(&self, worker: Option<Worker>, retry: Option<Job>) {
        if let Some(job) = retry {
            job.ticket.complete(Err(TaskError::PoolClosed));
        }
        if let Some(worker) = worker {
            if self.shared.is_terminating() {
                drop(worker); // killed and reaped by WorkerProcess::drop
            } else {
                self.retire(worker);
            }
        }
    }

    /// Starts a worker and waits, with a deadline, for it to take its setup.
    fn start(&self) -> Result<Worker, String> {
        let config = &self.shared.config;
        let program = || self.shared.spawner.program();
        let (link, worker_end) =
            ParentEnd::pair().map_err(|e| format!("cannot make a link socket: {e}"))?;
        let process = self
            .shared
            .spawner
            .spawn(worker_end)
            .map_err(|e| format!("cannot run {}: {e}", program()))?;
        let mut worker = Worker {
            process,
            link,
            tasks: 0,
        };
        let setup = Request::Setup {
            memory_limit: config.max_memory,
            core_dumps: config.core_dumps,
            has_context: config.context.is_some(),
        };
        let frame = frame::encode(&setup, |buf| {
            if let Some(context) = &config.context {
                buf.extend_from_slice(context);
            }
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap_or_else(|never| match never {});
        // A worker that died at once shows up below, as a closed link.
        let _ = worker.link.send(&frame);
        let deadline = Instant::now() + config.start_timeout;
        loop {
            match worker.link.recv_timeout(TICK) {
                Ok(frame) if matches!(frame::decode(&frame), Ok((Response::Ready, 0))) => {
                    return Ok(worker)
                }
                Ok(_) => return Err("worker answered its set-up with a malformed frame".into()),
                Err(RecvError::Closed) => return Err(self.died_starting(&mut worker)),
                Err(RecvError::Timeout) => {}
            }
            if self.shared.is_terminating() {
                return Err("pool terminated during start-up".to_owned());
            }
            // Dead, yet the socket is open: something it started holds the other end.
            if worker.process.try_wait().is_some() {
                return Err(self.died_starting(&mut worker));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "worker {} was not ready within {:?}",
                    program(),
                    config.start_timeout
                ));
            }
        }
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

    /// Sends the job and waits for its end, watching the worker every tick.
    fn execute(&self, w: &mut Worker, job: &Job) -> Step {
        let config = &self.shared.config;
        w.process.clear_stderr_tail();
        if w.link.send(&job.frame).is_err() {
            return Step::Lost(self.crashed(w, None));
        }
        let deadline = config.timeout.map(|t| Instant::now() + t);
        let mut peak = None;
        loop {
            let wait = deadline.map_or(TICK, |d| {
                d.saturating_duration_since(Instant::now()).min(TICK)
            });
            match w.link.recv_timeout(wait) {
                Ok(frame) => return self.answer(w, job, frame),
                Err(RecvError::Closed) => return Step::Lost(self.crashed(w, peak)),
                Err(RecvError::Timeout) => {}
            }
            if self.shared.is_terminating() {
                w.process.kill();
                return Step::Lost(TaskError::PoolClosed);
            }
            if job.ticket.is_cancel_requested() {
                w.process.kill();
                return Step::Lost(TaskError::Cancelled);
            }
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    w.process.terminate(config.kill_grace);
                    return Step::Lost(TaskError::TimedOut {
                        after: config.timeout.unwrap_or_default(),
                        stderr: w.process.stderr_tail(TAIL_WAIT),
                    });
                }
            }
            if let Some(limit) = config.max_memory {
                if let Some(rss) = sys::resident_bytes(w.process.pid()) {
                    peak = peak.max(Some(rss));
                    if rss > limit {
                        w.process.kill();
                        return Step::Lost(TaskError::MemoryLimit {
                            limit,
                            used: Some(rss),
                            stderr: w.process.stderr_tail(TAIL_WAIT),
                        });
                    }
                }
            }
            // Dead, yet the socket is open: something it spawned holds it. The group kill
            // in `crashed` takes that down too.
            if w.process.try_wait().is_some() {
                return Step::Lost(self.crashed(w, peak));
            }
        }
    }

    /// Reads a response frame. A frame that breaks the protocol costs the worker.
    fn answer(&self, w: &mut Worker, job: &Job, mut frame: Vec<u8>) -> Step {
        let broken = |w: &mut Worker, message: String| {
            w.process.kill();
            Step::Lost(TaskError::Protocol { message })
        };
        match frame::decode::<Response>(&frame) {
            Err(e) => broken(w, e.to_string()),
            Ok((Response::Output { id }, len)) if id == job.id => {
                frame.truncate(len);
                Step::Answered(Ok(frame))
            }
            Ok((Response::Failure { id, failure }, _)) if id == job.id => {
                Step::Answered(Err(task_error(failure)))
            }
            Ok((Response::Output { id } | Response::Failure { id, .. }, _)) => broken(
                w,
                format!("answer for task #{id} while task #{} was running", job.id),
            ),
            Ok((Response::Ready, _)) => broken(w, "a second Ready while a task ran".to_owned()),
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
    fn give_up(&self, message: String, retry: Option<Job>) {
        let error = TaskError::WorkerStart { message };
        if let Some(job) = retry {
            job.ticket.complete(Err(error.clone()));
        }
        if !self.shared.slot_gave_up() {
            return;
        }
        self.shared.gate.set_broken();
        while let Ok(job) = self.shared.queue.recv() {
            job.ticket.complete(Err(if self.shared.is_terminating() {
                TaskError::PoolClosed
            } else {
                error.clone()
            }));
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

fn task_error(failure: Failure) -> TaskError {
    match failure {
        Failure::Panicked { message, location } => TaskError::Panicked { message, location },
        Failure::Failed { chain } => TaskError::Failed { chain },
        Failure::Codec { direction, message } => TaskError::Codec {
            side: Side::Worker,
            direction,
            message,
        },
        Failure::UnknownTask { name, worker } => TaskError::UnknownTask { name, worker },
    }
}
