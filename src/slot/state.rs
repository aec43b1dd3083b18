//! [`State`]: where a slot is in its worker's lifecycle, each state holding its data.

use std::collections::VecDeque;
use std::time::Instant;

use super::worker::{InFlight, Worker};
use crate::pool::job::Job;

/// Jobs this slot has taken and owes an outcome: held for a retry after a crash, or
/// sent to a worker that died before running them. They go first on the next worker.
pub(super) type Backlog = VecDeque<Job>;

/// Where a slot is in its worker's lifecycle; each state owns what it needs.
///
/// ```text
/// Starting ─▶ Idle ◀─▶ Busy ─▶ Exited ─▶ Starting
///    │  └──────────────▲ (a job sent behind the Setup)
///    └─▶ GaveUp                Starting, Idle, Busy ─▶ Terminating
/// ```
pub(super) enum State {
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

/// `job`, just sent to a worker with nothing else in flight, is its head job now.
pub(super) fn busy_with(mut worker: Worker, job: Job, backlog: Backlog) -> State {
    worker.head_started = Instant::now();
    State::Busy {
        worker,
        in_flight: VecDeque::from([InFlight::new(job)]),
        backlog,
    }
}
