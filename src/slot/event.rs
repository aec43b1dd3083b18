//! [`Event`]: what happens in a pool, told as it happens: a worker started or exited
//! (and why), a task started, finished (and how) or is retried. Given to the listener of
//! [`PoolBuilder::on_event`](crate::PoolBuilder::on_event); a pool with no listener
//! never builds an event.
//!
//! Events are told from the slots' threads, in the order they happen in each slot
//! (slots run in parallel, so events of different slots interleave), and, for the few
//! outcomes decided before any worker had the task, from the thread that decided it.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{TaskError, TaskErrorKind};

/// Which task an [`Event`] is about, unique in its pool.
///
/// The numbers are opaque: unique, increasing in the order of submits and of maps,
/// not dense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TaskId {
    /// A task given to [`submit`](crate::Pool::submit) (or one of its forms).
    Submitted(u64),
    /// Input `index` (the index [`map_unordered`](crate::Pool::map_unordered) yields)
    /// of the map numbered `map`.
    Mapped {
        /// The map's number.
        map: u64,
        /// The input's place in the map's inputs, from 0.
        index: usize,
    },
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskId::Submitted(id) => write!(f, "#{id}"),
            TaskId::Mapped { map, index } => write!(f, "map#{map}[{index}]"),
        }
    }
}

/// Consecutive tasks of one job: a submitted task, or inputs of a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskRange {
    /// The task's `Task::NAME`.
    pub(crate) name: &'static str,
    /// The first of them.
    pub(crate) first: TaskId,
    /// How many (1 for a submitted task).
    pub(crate) count: usize,
}

impl TaskRange {
    /// The first `count` of these tasks.
    pub(crate) fn first(self, count: usize) -> TaskRange {
        TaskRange {
            count: count.min(self.count),
            ..self
        }
    }

    /// Each task's id, in order.
    pub(crate) fn ids(self) -> impl Iterator<Item = TaskId> {
        (0..self.count).map(move |i| match self.first {
            TaskId::Mapped { map, index } => TaskId::Mapped {
                map,
                index: index + i,
            },
            submitted => submitted,
        })
    }
}

/// Something that happened in a pool: see [`PoolBuilder::on_event`](crate::PoolBuilder::on_event).
///
/// Every task ends in exactly one [`TaskFinished`](Event::TaskFinished), as every task
/// gets exactly one outcome. Before it, a task has one
/// [`TaskStarted`](Event::TaskStarted) each time a worker takes it up: none if it ended
/// before any did (cancelled while queued, pool closed), more than one if it ran again
/// (see [`TaskRetried`](Event::TaskRetried)), or if it was taken up again before it
/// began: its worker was lost with no blame on it, or the rest of a batch held up
/// behind a slow task went to another worker.
///
/// **Tasks of a map run in batches.** A worker takes up a batch of a map's consecutive
/// inputs at once and runs them one after the other; it answers for several at a time
/// (about every 2 ms for long batches). The pool sees when a batch is taken up and
/// when each answer comes, not when each task in it begins: so each task of a batch
/// gets its `TaskStarted` as the batch is taken up, and its `TaskFinished` as the
/// answer holding its outcome comes, with [`elapsed`](Event::TaskFinished::elapsed)
/// only when that answer holds no other task's outcome. Timing each task in the worker
/// would cost the quick tasks maps are made for.
///
/// # Examples
///
/// ```no_run
/// use procpool::{Event, Pool};
///
/// let pool = Pool::builder()
///     .on_event(|event| match event {
///         Event::TaskFinished { task, id, outcome: Err(error), .. } => {
///             eprintln!("{task} {id}: {error}");
///         }
///         Event::WorkerExited { pid, cause, .. } => eprintln!("worker {pid} exited: {cause}"),
///         _ => {}
///     })
///     .build()?;
/// # Ok::<(), procpool::BuildError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A worker process joined slot `slot` (it may not be ready for tasks yet).
    #[non_exhaustive]
    WorkerStarted {
        /// The worker slot, from 0 to [`workers`](crate::Pool::workers) − 1.
        slot: usize,
        /// The worker's process id.
        pid: u32,
    },
    /// The worker `pid` left slot `slot`, for `cause`. A slot that goes on starts
    /// another: its [`WorkerStarted`](Event::WorkerStarted) follows.
    #[non_exhaustive]
    WorkerExited {
        /// The worker slot.
        slot: usize,
        /// The worker's process id.
        pid: u32,
        /// Why it left.
        cause: ExitCause,
    },
    /// Worker `pid` took up task `id` (for a map's task: the batch that holds it).
    #[non_exhaustive]
    TaskStarted {
        /// The task.
        id: TaskId,
        /// The task's [`Task::NAME`](crate::Task::NAME).
        task: &'static str,
        /// The worker slot.
        slot: usize,
        /// The worker's process id.
        pid: u32,
    },
    /// Task `id` has its outcome.
    #[non_exhaustive]
    TaskFinished {
        /// The task.
        id: TaskId,
        /// The task's [`Task::NAME`](crate::Task::NAME).
        task: &'static str,
        /// The worker slot that settled it; `None` when it was settled before any
        /// slot had it (cancelled while queued, a task that could not be encoded, a
        /// pool that was closed).
        slot: Option<usize>,
        /// The worker it ran on, or was sent to; `None` if none.
        pid: Option<u32>,
        /// `Ok` if the task returned its output, else the error it ended in (a task's
        /// own `Err` is [`TaskError::Failed`]). An output that the caller then cannot
        /// decode shows here as `Ok`; the caller gets [`TaskError::Codec`].
        outcome: Result<(), TaskError>,
        /// How long it ran, as the pool saw it: from its `TaskStarted` (or, in a batch,
        /// from the answer before) to the answer with its outcome, or, when its worker
        /// was lost, to when the slot had seen the worker gone (a timeout's includes
        /// the grace its worker was given). `None` where the pool cannot tell one
        /// task's time: tasks of a batch answered together, or read from a lost
        /// worker's journal, and tasks that did not run.
        elapsed: Option<Duration>,
    },
    /// Task `id`'s worker was lost while it ran (`error`), and the task runs again on
    /// a fresh worker: this is rerun number `attempt` (from 1) of the
    /// [`retries`](crate::PoolBuilder::retries) it may have.
    #[non_exhaustive]
    TaskRetried {
        /// The task.
        id: TaskId,
        /// The task's [`Task::NAME`](crate::Task::NAME).
        task: &'static str,
        /// The worker slot.
        slot: usize,
        /// The lost worker's process id.
        pid: u32,
        /// Which rerun this is, from 1.
        attempt: u32,
        /// What the task would have ended in without the retry.
        error: TaskError,
    },
}

/// Why a worker left its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitCause {
    /// Lost while it ran a task: it died (a signal, an exit), or was killed for the
    /// task (timeout, memory limit, cancel, a broken protocol or link, the pool
    /// terminating). The error is the one the running task was given, or would have
    /// been had it been to blame.
    Lost(TaskError),
    /// It failed to start, for this reason: it died, or was not ready in time, before
    /// it ran any task.
    FailedStart(String),
    /// It ended while idle: no task was running.
    DiedIdle,
    /// It was due for recycling ([`max_tasks_per_worker`], [`max_memory`]) and was
    /// asked to exit.
    ///
    /// [`max_tasks_per_worker`]: crate::PoolBuilder::max_tasks_per_worker
    /// [`max_memory`]: crate::PoolBuilder::max_memory
    Retired,
    /// The pool closed.
    PoolClosed,
}

impl ExitCause {
    /// The cause without its details.
    pub fn kind(&self) -> ExitKind {
        match self {
            ExitCause::Lost(error) => ExitKind::Lost(error.kind()),
            ExitCause::FailedStart(_) => ExitKind::FailedStart,
            ExitCause::DiedIdle => ExitKind::DiedIdle,
            ExitCause::Retired => ExitKind::Retired,
            ExitCause::PoolClosed => ExitKind::PoolClosed,
        }
    }
}

impl fmt::Display for ExitCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitCause::Lost(error) => write!(f, "lost: {error}"),
            ExitCause::FailedStart(why) => write!(f, "failed to start: {why}"),
            ExitCause::DiedIdle => f.write_str("died while idle"),
            ExitCause::Retired => f.write_str("retired"),
            ExitCause::PoolClosed => f.write_str("pool closed"),
        }
    }
}

/// What kind of [`ExitCause`] a worker left for, without its details: for counting
/// ([`WorkerExits`](crate::WorkerExits)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ExitKind {
    /// [`ExitCause::Lost`], with the kind of the running task's error.
    Lost(TaskErrorKind),
    /// [`ExitCause::FailedStart`].
    FailedStart,
    /// [`ExitCause::DiedIdle`].
    DiedIdle,
    /// [`ExitCause::Retired`].
    Retired,
    /// [`ExitCause::PoolClosed`].
    PoolClosed,
}

impl ExitKind {
    /// How many kinds there are: one per `TaskErrorKind` for `Lost`, and the others.
    pub(crate) const COUNT: usize = TaskErrorKind::ALL.len() + 4;

    /// Its place among the [`COUNT`](Self::COUNT) kinds.
    pub(crate) fn index(self) -> usize {
        let lost = TaskErrorKind::ALL.len();
        match self {
            ExitKind::Lost(kind) => kind.index(),
            ExitKind::FailedStart => lost,
            ExitKind::DiedIdle => lost + 1,
            ExitKind::Retired => lost + 2,
            ExitKind::PoolClosed => lost + 3,
        }
    }

    /// The kind at place `index` (the inverse of [`index`](Self::index)).
    pub(crate) fn at(index: usize) -> ExitKind {
        let lost = TaskErrorKind::ALL.len();
        match index.checked_sub(lost) {
            None => ExitKind::Lost(TaskErrorKind::ALL[index]),
            Some(0) => ExitKind::FailedStart,
            Some(1) => ExitKind::DiedIdle,
            Some(2) => ExitKind::Retired,
            Some(3) => ExitKind::PoolClosed,
            Some(_) => panic!("no exit kind at {index}"),
        }
    }
}

impl fmt::Display for ExitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitKind::Lost(kind) => write!(f, "lost_{kind}"),
            ExitKind::FailedStart => f.write_str("failed_start"),
            ExitKind::DiedIdle => f.write_str("died_idle"),
            ExitKind::Retired => f.write_str("retired"),
            ExitKind::PoolClosed => f.write_str("pool_closed"),
        }
    }
}

/// What hears a pool's events.
type Listener = dyn Fn(&Event) + Send + Sync;

/// Where a pool's events go: nowhere, or a listener.
#[derive(Clone, Default)]
pub(crate) struct Events(Option<Arc<Listener>>);

impl Events {
    /// Events told to `listener`.
    pub(crate) fn to(listener: impl Fn(&Event) + Send + Sync + 'static) -> Events {
        Events(Some(Arc::new(listener)))
    }

    /// Whether anyone listens: events are built only then.
    pub(crate) fn is_heard(&self) -> bool {
        self.0.is_some()
    }

    /// Tells the listener, if there is one, the event `make` makes (made only then).
    /// A panic in the listener stops there: the slot that told it must go on, or the
    /// tasks it holds would never have their outcomes.
    pub(crate) fn emit(&self, make: impl FnOnce() -> Event) {
        if let Some(listener) = &self.0 {
            let event = make();
            // The listener sees nothing of ours that a panic could leave half-changed.
            let _ = panic::catch_unwind(AssertUnwindSafe(|| listener(&event)));
        }
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Events(listener)"
        } else {
            "Events(none)"
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde::{Deserialize, Serialize};

    use super::{Event, ExitCause, ExitKind, TaskId, TaskRange};
    use crate::error::{TaskError, TaskErrorKind};
    use crate::{BoxError, Pool, Task};

    crate::test_support!();

    #[test]
    fn a_range_names_each_of_its_tasks() {
        let mapped = TaskRange {
            name: "t",
            first: TaskId::Mapped { map: 2, index: 5 },
            count: 3,
        };
        let ids: Vec<TaskId> = mapped.ids().collect();
        assert_eq!(ids, [5, 6, 7].map(|index| TaskId::Mapped { map: 2, index }));
        assert_eq!(mapped.first(1).ids().count(), 1);
        let submitted = TaskRange {
            name: "t",
            first: TaskId::Submitted(9),
            count: 1,
        };
        assert_eq!(submitted.ids().collect::<Vec<_>>(), [TaskId::Submitted(9)]);
    }

    /// Returns its number, or aborts the worker on 0.
    #[derive(Serialize, Deserialize)]
    struct Probe(u8);

    impl Task for Probe {
        const NAME: &'static str = "procpool::slot::event::tests::Probe";
        type Output = u8;
        fn run(self) -> Result<u8, BoxError> {
            if self.0 == 0 {
                std::process::abort();
            }
            Ok(self.0)
        }
    }

    crate::register!(Probe);

    #[test]
    fn exit_kinds_have_one_place_each() {
        for index in 0..ExitKind::COUNT {
            assert_eq!(ExitKind::at(index).index(), index);
        }
        let lost = ExitCause::Lost(TaskError::Cancelled).kind();
        assert_eq!(lost, ExitKind::Lost(TaskErrorKind::Cancelled));
        assert_eq!(lost.to_string(), "lost_cancelled");
        assert_eq!(TaskId::Mapped { map: 3, index: 7 }.to_string(), "map#3[7]");
    }

    /// An event as a line, with pids as the order they first appeared in (`w0`, `w1`).
    fn line(event: &Event, pids: &mut Vec<u32>) -> String {
        let mut name = |pid: u32| {
            let n = pids.iter().position(|p| *p == pid).unwrap_or_else(|| {
                pids.push(pid);
                pids.len() - 1
            });
            format!("w{n}")
        };
        match event {
            Event::WorkerStarted { slot, pid } => format!("{slot} {} started", name(*pid)),
            Event::TaskStarted { slot, pid, .. } => format!("{slot} {} runs", name(*pid)),
            Event::TaskFinished {
                slot, pid, outcome, ..
            } => {
                let on = pid.map_or("-".to_owned(), &mut name);
                let outcome = match outcome {
                    Ok(()) => "ok".to_owned(),
                    Err(TaskError::Signaled { signal, .. }) => format!("signal {signal}"),
                    Err(e) => format!("{e:?}"),
                };
                format!("{} {on} finished: {outcome}", slot.unwrap_or(9))
            }
            Event::TaskRetried { slot, pid, .. } => format!("{slot} {} retries", name(*pid)),
            Event::WorkerExited { slot, pid, cause } => {
                let cause = match cause {
                    ExitCause::Lost(TaskError::Signaled { signal, .. }) => {
                        format!("lost to signal {signal}")
                    }
                    other => format!("{other:?}"),
                };
                format!("{slot} {} exited: {cause}", name(*pid))
            }
        }
    }

    #[test]
    fn a_slot_tells_each_transition_as_it_happens() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = seen.clone();
        let pool = Pool::builder()
            .workers(1)
            .core_dumps(false)
            .on_event(move |e| listener.lock().unwrap().push(e.clone()))
            .build()
            .unwrap();
        assert_eq!(pool.submit(Probe(1)).unwrap().wait(), Ok(1));
        let crash = pool.submit(Probe(0)).unwrap().wait().unwrap_err();
        assert_eq!(crash.signal(), Some(6), "{crash:?}");
        assert_eq!(pool.submit(Probe(2)).unwrap().wait(), Ok(2));
        pool.join();
        let mut pids = Vec::new();
        let lines: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|e| line(e, &mut pids))
            .collect();
        assert_eq!(
            lines,
            [
                "0 w0 started",
                "0 w0 runs",
                "0 w0 finished: ok",
                "0 w0 runs",
                "0 w0 exited: lost to signal 6",
                "0 w0 finished: signal 6",
                "0 w1 started",
                "0 w1 runs",
                "0 w1 finished: ok",
                "0 w1 exited: PoolClosed",
            ]
        );
    }
}
