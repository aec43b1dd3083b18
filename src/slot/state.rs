//! [`State`]: where a slot is in its worker's lifecycle, each state holding its data.

use std::collections::VecDeque;
use std::time::Instant;

use super::worker::{InFlight, Worker};
use crate::error::TaskError;
use crate::pool::job::Job;

/// Jobs this slot has taken and owes an outcome: held for a retry after a crash, or
/// sent to a worker that died before running them. They go first on the next worker.
pub(super) type Backlog = VecDeque<Job>;

/// Where a slot is in its worker's lifecycle; each state owns what it needs, and the
/// supervisor has one method per state that returns the next.
///
/// ```text
/// Starting ─▶ Idle            Ready, and no job waiting
/// Starting ─▶ Greeting        a job sent right behind the Setup
/// Starting ─▶ Starting        a failed start, backed off
/// Starting ─▶ GaveUp          max_start_failures in a row
/// Greeting ─▶ Busy            Ready
/// Idle     ─▶ Busy            a job
/// Busy     ─▶ Idle            every job answered
/// Greeting, Busy ─▶ Lost      crash, deadline, cancel, memory, bad frame, send failed
/// Lost     ─▶ Starting        lost before Ready: a failed start
/// Lost     ─▶ Exited          blame decided
/// Idle, Busy ─▶ Exited        died idle (no task blamed), or retired
/// Exited   ─▶ Starting
/// any      ─▶ Terminating     the pool closes
/// ```
pub(super) enum State {
    /// No worker yet; `failures` failed starts in a row so far.
    Starting { failures: u32, backlog: Backlog },
    /// A new worker was sent jobs behind its `Setup` and has not said `Ready`: none of
    /// them has started. If it is not ready by `deadline`, or is lost before, its
    /// start failed and they all go back.
    Greeting {
        worker: Worker,
        in_flight: VecDeque<InFlight>,
        backlog: Backlog,
        deadline: Instant,
    },
    /// A worker ready for a job, watched while it waits.
    Idle { worker: Worker, backlog: Backlog },
    /// A worker running the first of `in_flight` (all sent to it, in order).
    Busy {
        worker: Worker,
        in_flight: VecDeque<InFlight>,
        backlog: Backlog,
    },
    /// The worker is gone (reaped), with `error` for the task it was running; `ready`
    /// if it had said `Ready`. What it sent before it went is still to read, and then
    /// blame to decide (`loss.rs`).
    Lost {
        worker: Worker,
        in_flight: VecDeque<InFlight>,
        backlog: Backlog,
        error: TaskError,
        ready: bool,
    },
    /// The worker is gone and every job it held is settled or back in the backlog.
    Exited { backlog: Backlog },
    /// The pool is closing: last rites for the worker and any held job.
    Terminating {
        worker: Option<Worker>,
        backlog: Backlog,
    },
    /// Starting failed `max_start_failures` times in a row.
    GaveUp { message: String, backlog: Backlog },
}

/// `sent`, just sent to a ready worker with nothing else in flight, is its head now.
pub(super) fn busy_with(mut worker: Worker, sent: InFlight, backlog: Backlog) -> State {
    worker.head_started = Instant::now();
    State::Busy {
        worker,
        in_flight: VecDeque::from([sent]),
        backlog,
    }
}
