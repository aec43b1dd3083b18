//! [`Event`]: what happens in a slot, told as it happens — a worker started, a job
//! started or finished, a worker exited and why. The seam that progress, counts and
//! event streams build on; a pool with no listener pays one branch per event.
//!
//! Events are told from the slot's thread, in the order they happen in that slot;
//! slots run in parallel, so events of different slots interleave.

use std::fmt;
use std::sync::Arc;

use crate::error::TaskError;

/// One thing that happened in slot `slot`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// A worker process exists for the slot (not yet ready, perhaps).
    WorkerStarted { slot: usize, pid: u32 },
    /// Job `job` (of `tasks` tasks) became the one its worker runs: the answer before
    /// it came, or it went to an idle worker, or the worker said `Ready`.
    JobStarted {
        slot: usize,
        pid: u32,
        job: u64,
        tasks: usize,
    },
    /// `tasks` tasks of job `job` have their outcomes: for a single task, `Ok` if it
    /// returned (its own `Err` included, which the caller decodes), else the error it
    /// ended with; for a batch's tasks, `Ok`, their outcomes being in the records the
    /// map decodes. A task that runs again after a loss finishes only once, later.
    JobFinished {
        slot: usize,
        pid: Option<u32>,
        job: u64,
        tasks: usize,
        outcome: Result<(), TaskError>,
    },
    /// The slot's worker is gone.
    WorkerExited {
        slot: usize,
        pid: u32,
        cause: ExitCause,
    },
}

/// Why a worker left its slot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ExitCause {
    /// Lost while it ran a task: the error the running task was given (or would have
    /// been, had it been to blame).
    Lost(TaskError),
    /// Its start failed, for this reason.
    FailedStart(String),
    /// It ended while idle: no task was running.
    DiedIdle,
    /// Due for recycling (`max_tasks_per_worker`, `max_memory`): asked to exit.
    Retired,
    /// The pool closed.
    PoolClosed,
}

/// What hears a pool's events, from the slots' threads.
type Listener = dyn Fn(&Event) + Send + Sync;

/// Where a pool's events go: nowhere, or a listener.
#[derive(Clone, Default)]
pub(crate) struct Events(Option<Arc<Listener>>);

impl Events {
    /// Events told to `listener`, from the slots' threads.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "the public API comes with issue 10")
    )]
    pub(crate) fn to(listener: impl Fn(&Event) + Send + Sync + 'static) -> Events {
        Events(Some(Arc::new(listener)))
    }

    /// Tells the listener, if there is one, the event `make` makes (made only then).
    pub(crate) fn emit(&self, make: impl FnOnce() -> Event) {
        if let Some(listener) = &self.0 {
            listener(&make());
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

    use super::{Event, Events, ExitCause};
    use crate::error::TaskError;
    use crate::{BoxError, Pool, Task};

    crate::test_support!();

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
            Event::JobStarted {
                slot, pid, tasks, ..
            } => format!("{slot} {} runs {tasks}", name(*pid)),
            Event::JobFinished {
                slot,
                pid,
                tasks,
                outcome,
                ..
            } => {
                let on = pid.map_or("-".to_owned(), &mut name);
                let outcome = match outcome {
                    Ok(()) => "ok".to_owned(),
                    Err(TaskError::Signaled { signal, .. }) => format!("signal {signal}"),
                    Err(e) => format!("{e:?}"),
                };
                format!("{slot} {on} finished {tasks}: {outcome}")
            }
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
            .events(Events::to(move |e| {
                listener.lock().unwrap().push(e.clone())
            }))
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
                "0 w0 runs 1",
                "0 w0 finished 1: ok",
                "0 w0 runs 1",
                "0 w0 exited: lost to signal 6",
                "0 w0 finished 1: signal 6",
                "0 w1 started",
                "0 w1 runs 1",
                "0 w1 finished 1: ok",
                "0 w1 exited: PoolClosed",
            ]
        );
    }
}
