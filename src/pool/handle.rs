//! [`TaskHandle`]: the caller's side of one submitted task.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::job::{RawOutcome, Ticket};
use crate::error::{Direction, Side, TaskError};
use crate::slot::event::TaskId;
use crate::wire::codec;

/// The outcome-to-be of a submitted task.
///
/// Dropping a handle does not cancel its task; use [`cancel`](TaskHandle::cancel).
///
/// With the feature `async`, a handle is also a future: `handle.await` gives the
/// outcome without blocking a thread (see `TaskFuture`, which cancels its task if
/// dropped before the outcome is in).
#[must_use = "the task runs either way, but its outcome is lost unless it is waited for"]
pub struct TaskHandle<O> {
    pub(super) ticket: Arc<Ticket>,
    _output: PhantomData<fn() -> O>,
}

impl<O: DeserializeOwned> TaskHandle<O> {
    pub(crate) fn new(ticket: Arc<Ticket>) -> Self {
        TaskHandle {
            ticket,
            _output: PhantomData,
        }
    }

    /// Blocks until the task has an outcome.
    ///
    /// # Errors
    /// Why the task produced no output; see [`TaskError`].
    pub fn wait(self) -> Result<O, TaskError> {
        self.decode(self.ticket.wait())
    }

    /// Waits up to `timeout`. Hands the handle back (`Err`) if the task is still going.
    ///
    /// # Errors
    /// `Err(self)` when no outcome came in time; the task keeps running.
    pub fn wait_timeout(self, timeout: Duration) -> Result<Result<O, TaskError>, Self> {
        match self.ticket.wait_timeout(timeout) {
            Some(outcome) => Ok(self.decode(outcome)),
            None => Err(self),
        }
    }

    /// The task's id, as [`Event`](crate::Event)s name it.
    ///
    /// # Panics
    /// Never for a handle a pool gave out.
    pub fn id(&self) -> TaskId {
        self.ticket
            .first_task()
            .expect("a handle from a pool names its task")
    }

    /// Whether the task has an outcome (so `wait` would not block).
    pub fn is_finished(&self) -> bool {
        self.ticket.is_done()
    }

    /// Cancels the task. A queued task ends at once; a running one has its worker
    /// killed (and replaced) within one supervisor tick (10 ms). A task that finishes
    /// before the kill lands keeps its output, so `true` means "asked in time to stop a
    /// task that had not finished", not "the task was stopped": the outcome says what
    /// happened. Returns `false` if the task already had an outcome.
    pub fn cancel(&self) -> bool {
        self.ticket.cancel()
    }
}

impl<O: DeserializeOwned> TaskHandle<O> {
    /// Decodes the task's outcome; an output that does not decode is counted as the
    /// caller gets it, a codec error.
    fn decode(&self, outcome: RawOutcome) -> Result<O, TaskError> {
        decode_counted(&self.ticket, outcome)
    }
}

/// Decodes the outcome of `ticket`'s task; an output that does not decode is counted as
/// the caller gets it, a codec error. Every way of taking an outcome goes through here.
pub(crate) fn decode_counted<O: DeserializeOwned>(
    ticket: &Ticket,
    outcome: RawOutcome,
) -> Result<O, TaskError> {
    let output = outcome.is_ok();
    let decoded = decode_output(outcome);
    if output && decoded.is_err() {
        ticket.undecodable();
    }
    decoded
}

impl<O> TaskHandle<O> {
    /// The shared state of the task, for waiting on several handles at once.
    pub(crate) fn ticket(&self) -> &Ticket {
        &self.ticket
    }
}

impl<O> fmt::Debug for TaskHandle<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("finished", &self.ticket.is_done())
            .finish()
    }
}

/// Decodes a raw outcome into the task's output type.
pub(crate) fn decode_output<O: DeserializeOwned>(outcome: RawOutcome) -> Result<O, TaskError> {
    let output = outcome?;
    codec::decode_with_fds(&output.bytes, output.fds).map_err(|message| TaskError::Codec {
        side: Side::Parent,
        direction: Direction::ToParent,
        message,
    })
}

/// Decodes an encoded output.
pub(crate) fn decode_slice<O: DeserializeOwned>(bytes: &[u8]) -> Result<O, TaskError> {
    codec::decode(bytes).map_err(|message| TaskError::Codec {
        side: Side::Parent,
        direction: Direction::ToParent,
        message,
    })
}
