//! [`Telemetry`]: where what happens to a pool's tasks and workers goes. It is counted
//! always (`stats.rs`), told to the pool's listener if it has one (`slot::event`), and
//! traced with the `tracing` feature (`trace.rs`). The slots call it from their threads
//! as things happen; the callers' threads call it for the few outcomes decided before
//! any slot had the task.
//!
//! Whatever is counted is counted before the outcome reaches its caller, so a caller
//! that reads the stats right after its last outcome finds it counted.

use std::sync::Arc;
use std::time::Instant;

use super::stats::{Counter, Counters, Stats};
use super::trace::{self, JobTrace};
use crate::error::TaskError;
use crate::slot::event::{Event, Events, ExitCause, TaskRange};
use crate::task::TaskTypes;
use crate::wire::batch::{self, Entries};

/// A pool's counts and its listener.
#[derive(Debug)]
pub(crate) struct Telemetry {
    counters: Counters,
    events: Events,
}

impl Telemetry {
    /// For a pool of `slots` slots that tells `events`.
    pub(crate) fn new(events: Events, slots: usize) -> Telemetry {
        Telemetry {
            counters: Counters::new(slots),
            events,
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// `n` tasks were accepted: the pool owes each an outcome from now on.
    pub(crate) fn accepted(&self, n: usize) {
        self.counters.submitted(n);
    }

    /// `n` tasks counted accepted were refused after all (the pool closed meanwhile).
    pub(crate) fn refused(&self, n: usize) {
        self.counters.unsubmitted(n);
    }

    /// An output counted `ok` that its caller could not decode.
    pub(crate) fn undecodable(&self) {
        self.counters.undecodable();
    }

    /// `tasks` end in `error` in a caller's thread, before any slot had them.
    pub(crate) fn settled_here(&self, tasks: TaskRange, error: &TaskError) {
        self.count_here(tasks, error);
        self.tell_here(tasks, error);
    }

    /// The counting half of [`settled_here`](Self::settled_here).
    pub(crate) fn count_here(&self, tasks: TaskRange, error: &TaskError) {
        self.counters
            .finished(Counter::Caller, Some(error.kind()), tasks.count);
    }

    /// The telling half of [`settled_here`](Self::settled_here).
    pub(crate) fn tell_here(&self, tasks: TaskRange, error: &TaskError) {
        for id in tasks.ids() {
            trace::finished(None, tasks.name, id, None, None, error);
            self.events.emit(|| Event::TaskFinished {
                id,
                task: tasks.name,
                slot: None,
                pid: None,
                outcome: Err(error.clone()),
                elapsed: None,
            });
        }
    }

    pub(crate) fn worker_started(&self, slot: usize, pid: u32) {
        self.counters.worker_started(slot);
        trace::worker_started(slot, pid);
        self.events.emit(|| Event::WorkerStarted { slot, pid });
    }

    pub(crate) fn worker_exited(&self, slot: usize, pid: u32, cause: ExitCause) {
        self.counters.worker_exited(slot, cause.kind());
        trace::worker_exited(slot, pid, &cause);
        self.events
            .emit(|| Event::WorkerExited { slot, pid, cause });
    }

    /// Slot `slot`'s worker runs `tasks` tasks now (0: none).
    pub(crate) fn running(&self, slot: usize, tasks: usize) {
        self.counters.running(slot, tasks);
    }

    /// Worker `pid` of slot `slot` took up `tasks`, whose job `job` traces.
    pub(crate) fn started(&self, slot: usize, pid: u32, tasks: TaskRange, job: &mut JobTrace) {
        self.counters.running(slot, tasks.count);
        job.started(tasks, slot, pid);
        if self.events.is_heard() {
            for id in tasks.ids() {
                self.events.emit(|| Event::TaskStarted {
                    id,
                    task: tasks.name,
                    slot,
                    pid,
                });
            }
        }
    }

    /// `tasks`, settled by slot `slot` (on worker `pid`, if any), end in `outcome`,
    /// having run `since` then if known. (The clock is read only for a listener.)
    pub(crate) fn finished(
        &self,
        slot: usize,
        pid: Option<u32>,
        tasks: TaskRange,
        outcome: Result<(), &TaskError>,
        since: Option<Instant>,
        job: &JobTrace,
    ) {
        let kind = outcome.err().map(TaskError::kind);
        self.counters
            .finished(Counter::Slot(slot), kind, tasks.count);
        // The common case, an output nobody listens for, costs the count alone.
        if kind.is_none() && !self.events.is_heard() {
            return;
        }
        for id in tasks.ids() {
            if let Err(error) = outcome {
                trace::finished(Some(job), tasks.name, id, Some(slot), pid, error);
            }
            self.events.emit(|| Event::TaskFinished {
                id,
                task: tasks.name,
                slot: Some(slot),
                pid,
                outcome: outcome.map_err(Clone::clone),
                elapsed: since.map(|since| since.elapsed()),
            });
        }
    }

    /// `tasks` of a batch, on worker `pid` of slot `slot`, have their outcomes in
    /// `records` (one each, well formed), `failures` of them failures if known. Each
    /// record is read only when it must be: when some are failures (to count them by
    /// kind), or when a listener hears each task. They ran `since` then, if known
    /// (the answer before, or the batch's start).
    #[expect(
        clippy::too_many_arguments,
        reason = "the facts of one answer, each from another place"
    )]
    pub(crate) fn answered(
        &self,
        slot: usize,
        pid: u32,
        tasks: TaskRange,
        records: &[u8],
        failures: Option<usize>,
        types: TaskTypes,
        since: Option<Instant>,
        job: &JobTrace,
    ) {
        // Records read back from a journal were checked too, but not counted.
        let failures = failures
            .or_else(|| batch::failed_records(records, tasks.count))
            .unwrap_or(tasks.count);
        let by = Counter::Slot(slot);
        if failures == 0 && !self.events.is_heard() {
            self.counters.finished(by, None, tasks.count);
            return;
        }
        // Only a task answered alone has a time of its own.
        let elapsed = since
            .filter(|_| tasks.count == 1)
            .map(|since| since.elapsed());
        let mut ok = 0;
        let outcomes = Entries::new(records).map(|entry| match entry {
            Some(entry) => batch::read_record(entry)
                .into_result(|| types.describe())
                .map(drop),
            None => Err(TaskError::Protocol {
                message: "a batch answer ran short of records".to_owned(),
            }),
        });
        for (id, outcome) in tasks.ids().zip(outcomes) {
            match &outcome {
                Ok(()) => ok += 1,
                Err(error) => {
                    self.counters.finished(by, Some(error.kind()), 1);
                    trace::finished(Some(job), tasks.name, id, Some(slot), Some(pid), error);
                }
            }
            self.events.emit(|| Event::TaskFinished {
                id,
                task: tasks.name,
                slot: Some(slot),
                pid: Some(pid),
                outcome,
                elapsed,
            });
        }
        self.counters.finished(by, None, ok);
    }

    /// The task `task`, on worker `pid` of slot `slot` when it was lost (`error`), runs
    /// again: rerun number `attempt`.
    pub(crate) fn retried(
        &self,
        slot: usize,
        pid: u32,
        task: TaskRange,
        attempt: u32,
        error: &TaskError,
        job: &JobTrace,
    ) {
        self.counters.retried(slot);
        for id in task.ids() {
            trace::retried(job, task.name, id, slot, pid, attempt, error);
            self.events.emit(|| Event::TaskRetried {
                id,
                task: task.name,
                slot,
                pid,
                attempt,
                error: error.clone(),
            });
        }
    }
}

/// What a ticket reports when it settles on its own, cancelled while queued: the
/// tasks it stands for, and where to count them.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) telemetry: Arc<Telemetry>,
    pub(crate) tasks: TaskRange,
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::error::TaskErrorKind;
    use crate::slot::event::TaskId;
    use crate::wire::frame::Failure;

    /// Three records: an output, a panic, an output.
    fn records() -> Vec<u8> {
        let mut records = Vec::new();
        batch::push_record(&mut records, batch::output(&1u32));
        batch::push_record(&mut records, |_| {
            Err(Failure::Panicked {
                message: "no".into(),
                location: None,
            })
        });
        batch::push_record(&mut records, batch::output(&3u32));
        records
    }

    fn range() -> TaskRange {
        TaskRange {
            name: "t",
            first: TaskId::Mapped { map: 0, index: 10 },
            count: 3,
        }
    }

    #[test]
    fn an_answer_is_counted_by_kind_without_a_listener() {
        let telemetry = Telemetry::new(Events::default(), 1);
        telemetry.accepted(3);
        let types = TaskTypes::pair::<u32, u32>();
        let job = JobTrace::default();
        // The failures are counted from the records when not known, and read by kind.
        telemetry.answered(0, 1, range(), &records(), None, types, None, &job);
        let stats = telemetry.stats();
        assert_eq!(stats.finished.ok(), 2);
        assert_eq!(stats.finished.errors(TaskErrorKind::Panicked), 1);
        assert_eq!(stats.queued + stats.running, 0);
    }

    #[test]
    fn a_listener_hears_each_task_of_an_answer() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let into = heard.clone();
        let telemetry =
            Telemetry::new(Events::to(move |e| into.lock().unwrap().push(e.clone())), 1);
        let types = TaskTypes::pair::<u32, u32>();
        let job = JobTrace::default();
        telemetry.answered(0, 1, range(), &records(), Some(1), types, None, &job);
        let heard = heard.lock().unwrap();
        let outcomes: Vec<(TaskId, Option<TaskErrorKind>)> = heard
            .iter()
            .map(|e| match e {
                Event::TaskFinished {
                    id,
                    outcome,
                    elapsed: None,
                    ..
                } => (*id, outcome.as_ref().err().map(TaskError::kind)),
                other => panic!("{other:?}"),
            })
            .collect();
        let at = |index| TaskId::Mapped { map: 0, index };
        assert_eq!(
            outcomes,
            [
                (at(10), None),
                (at(11), Some(TaskErrorKind::Panicked)),
                (at(12), None)
            ]
        );
    }
}
