//! The `Lost` state: a slot's worker is gone. Its last answers are read, then the
//! rules of [`loss`] decide a failed start, or who takes the error and what runs again
//! (the design note `README.md` beside this file tells the whole story).

use std::collections::VecDeque;
use std::time::Duration;

use super::busy::{expected, Answer};
use super::event::ExitCause;
use super::loss::{self, Loss, Verdict};
use super::state::{Backlog, State};
use super::supervisor::Supervisor;
use super::worker::{InFlight, Worker};
use crate::error::TaskError;
use crate::pool::job::Job;
use crate::pool::mailbox::Segment;
use crate::wire::journal::Journal;

impl Supervisor {
    /// The worker is gone: takes what it sent before it went, then settles the jobs it
    /// held by the rules of [`loss`] (`ready`: it had said `Ready`).
    pub(super) fn lost(
        &self,
        mut worker: Worker,
        mut in_flight: VecDeque<InFlight>,
        mut backlog: Backlog,
        error: TaskError,
        ready: bool,
    ) -> State {
        // Answers it sent before it went may still be unread: take them first, so
        // finished tasks keep their outcomes.
        let target = in_flight.front().map(|f| f.job.id);
        let mut ready_after = ready;
        self.drain(&mut worker, &mut in_flight, &mut ready_after);
        // The answers drained may have moved the head on: nothing runs now.
        self.running(0);
        // Still not ready, or killed for its start (deadline, bad frame) although a
        // `Ready` turned up in the drain: a failed start either way.
        if loss::is_failed_start(ready, ready_after, error.is_crash()) {
            // No task ran; all go back.
            for rest in in_flight.into_iter().rev() {
                backlog.push_front(rest.job);
            }
            // Stopped because the pool terminates: it did not fail its start.
            if matches!(error, TaskError::PoolClosed) {
                self.exited(worker, ExitCause::PoolClosed);
                return State::Terminating {
                    worker: None,
                    backlog,
                };
            }
            let message = match error {
                TaskError::WorkerStart { message } | TaskError::Link { message } => message,
                TaskError::Protocol { .. } => {
                    "worker answered its set-up with a malformed frame".to_owned()
                }
                _ => self.died_starting(&mut worker),
            };
            let failures = worker.start_failures;
            self.exited(worker, ExitCause::FailedStart(message.clone()));
            return self.start_failed(failures, message, backlog);
        }
        // The running task takes the error: the head's (for a batch, the journal,
        // read now that the worker is dead, says which of its tasks had finished).
        // The tasks behind it never started and go back to the backlog, in order,
        // for the next worker. If the head's answer turned up and the worker was
        // killed for that head (deadline, cancel, memory), the task it had moved
        // on to is not to blame and runs again.
        // A head numbered past what the worker took up had not begun: no blame.
        let began = in_flight
            .front()
            .is_none_or(|head| worker.may_have_begun(head.number));
        let journal = worker.journal.take();
        let pid = worker.process.pid();
        let ran = worker.head_started;
        self.exited(worker, ExitCause::Lost(error.clone()));
        let Some(head) = in_flight.pop_front() else {
            return State::Exited { backlog };
        };
        let was_head = Some(head.job.id) == target;
        for rest in in_flight.into_iter().rev() {
            backlog.push_front(rest.job);
        }
        let salvaged = self.salvage(head, pid, journal.as_ref(), &mut backlog);
        let Some(mut crashed) = salvaged else {
            return State::Exited { backlog };
        };
        let verdict = loss::verdict(Loss {
            crash: error.is_crash(),
            retryable: error.is_retryable(),
            was_head,
            began,
            attempts: crashed.attempts,
            retries: crashed.options.retries,
            terminating: self.shared.is_terminating(),
        });
        match verdict {
            Verdict::Closed => {
                self.fail(crashed, Some(pid), TaskError::PoolClosed);
                return State::Terminating {
                    worker: None,
                    backlog,
                };
            }
            Verdict::Requeue => backlog.push_front(crashed),
            Verdict::Retry => {
                crashed.attempts += 1;
                let (tasks, attempt) = (crashed.range(), crashed.attempts);
                self.telemetry()
                    .retried(self.slot, pid, tasks, attempt, &error, &crashed.trace);
                backlog.push_front(crashed);
            }
            Verdict::Fail => self.fail_after(crashed, Some(pid), error, Some(ran)),
        }
        State::Exited { backlog }
    }

    /// Takes the answers a lost worker sent before it went and that are still unread;
    /// `ready` becomes true if its `Ready` is among them.
    fn drain(&self, worker: &mut Worker, in_flight: &mut VecDeque<InFlight>, ready: &mut bool) {
        while let Some(head) = in_flight.front_mut() {
            let Ok(frame) = worker.link.recv_timeout(Duration::ZERO) else {
                return;
            };
            let answer = self.answer(worker, head, frame, expected(head, *ready));
            *ready |= matches!(answer, Answer::Ready);
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
        pid: u32,
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
                let segment = Segment::Records { count, records };
                self.deliver(pid, &mut job, segment, None, None, None);
            }
        }
        let Some(batch) = job.batch_mut() else {
            return Some(job);
        };
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
}
