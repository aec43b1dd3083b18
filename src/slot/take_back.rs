//! A slow task holds only its own worker: what it finished before it is read from the
//! journal and delivered, the rest of its batch is cut off, and the jobs queued behind
//! it are taken back, all for other workers. The handshakes that keep a task from
//! running twice are in `wire/journal.rs`; when to do it, in `pipeline::take_back_due`.

use std::collections::VecDeque;

use super::supervisor::{Supervisor, TICK};
use super::worker::{InFlight, Worker};
use crate::error::TaskError;
use crate::link::RecvError;
use crate::pool::mailbox::Segment;
use crate::wire::frame::{self, Response};

impl Supervisor {
    /// Delivers the records of the head batch's tasks that the journal shows finished
    /// and the worker has not answered for yet (it will, and they are skipped then).
    pub(super) fn deliver_finished(&self, worker: &Worker, head: &mut InFlight) {
        let Some(journal) = &worker.journal else {
            return;
        };
        let Some(found) = journal.peek(head.job.id, head.received) else {
            return;
        };
        let count = found.done - head.received;
        if !head.job.is_batch() {
            return;
        }
        let records = found.records;
        self.running(head.job.tasks() - count);
        // Read while the next task runs: when each finished, nothing tells.
        let segment = Segment::Records { count, records };
        let pid = worker.process.pid();
        self.deliver(pid, &mut head.job, segment, None, None, None);
        head.received += count;
    }

    /// The head batch's running task has run well past what its jobs take: the tasks
    /// after it go to other workers, unless the worker has begun the next one already
    /// (see `wire::journal`).
    pub(super) fn cut(&self, worker: &Worker, head: &mut InFlight) {
        let (Some(journal), Some(number)) = (&worker.journal, head.number) else {
            return;
        };
        let Some(running) = journal.progress(head.job.id) else {
            return;
        };
        let from = usize::try_from(running)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        if from >= head.received + head.job.tasks() {
            return;
        }
        head.cut = true;
        if !journal.cut(number, from) {
            journal.lift_cut();
            return;
        }
        if let Some(rest) = head
            .job
            .split_back(from - head.received, self.shared.new_id())
        {
            self.running(head.job.tasks());
            self.shared.give_back(rest);
        }
    }

    /// The head has run well past what its jobs take: the jobs queued behind it go to
    /// other workers, unless this one has taken them up already (see `wire::journal`).
    pub(super) fn take_back(&self, worker: &mut Worker, in_flight: &mut VecDeque<InFlight>) {
        let (Some(journal), Some(from)) = (&worker.journal, in_flight[1].number) else {
            return;
        };
        if !journal.refuse_from(from) {
            // It has moved on past the head meanwhile: nothing to take back. It may
            // refuse a job still, which then comes back as `Skipped` (see `settle`).
            journal.lift_refusal();
            return;
        }
        for taken in in_flight.drain(1..) {
            worker.taken_back.push_back(taken.job.id);
            self.shared.give_back(taken.job);
        }
    }

    /// Waits a tick for the worker's `Skipped` for `id`, the first of the jobs taken
    /// back from it; once all have come, it may take up jobs again. `Err` when the
    /// worker is lost (no task of its own was running, so none is blamed).
    pub(super) fn refusal(&self, worker: &mut Worker, id: u64) -> Result<(), TaskError> {
        match worker.link.recv_timeout(TICK) {
            Ok(frame) => match frame::decode::<Response>(&frame) {
                Ok((Response::Skipped { id: got }, _)) if got == id => {
                    worker.taken_back.pop_front();
                    if let (true, Some(journal)) = (worker.taken_back.is_empty(), &worker.journal) {
                        journal.lift_refusal();
                    }
                    Ok(())
                }
                _ => {
                    worker.process.kill();
                    Err(TaskError::Protocol {
                        message: format!("expected the refusal of job #{id} taken back"),
                    })
                }
            },
            Err(RecvError::Closed) => Err(self.crashed(worker, None)),
            Err(RecvError::Broken(message)) => {
                worker.process.kill();
                Err(TaskError::Link { message })
            }
            Err(RecvError::Timeout) if self.shared.is_terminating() => {
                worker.process.kill();
                Err(TaskError::PoolClosed)
            }
            Err(RecvError::Timeout) => match worker.process.try_wait() {
                Some(_) => Err(self.crashed(worker, None)),
                None => Ok(()),
            },
        }
    }
}
