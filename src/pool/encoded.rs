//! Running a task that arrived as bytes: [`Pool::submit_encoded`] and its
//! [`EncodedHandle`], whose outcome stays encoded for the transport to carry back.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::api::Pool;
use super::completion;
use super::job::{Encoded, Job, RawOutcome, Ticket, Work};
use super::options::TaskOptions;
use super::trace::{JobTrace, Parent};
use crate::encoded::EncodedTask;
use crate::error::{SubmitError, SubmitErrorKind, TaskError};
use crate::slot::event::TaskId;
use crate::task;
use crate::wire::frame::{self, Request};

impl Pool {
    /// Queues a task that came as bytes (from another process or machine; see
    /// [`EncodedTask`]), waiting for an in-flight place if the pool is at its limit.
    /// Its outcome stays encoded: [`EncodedHandle::wait`] gives the output's bytes,
    /// which [`decode_output`](crate::decode_output) turns back into the output where
    /// the task's type is known.
    ///
    /// Only a task this program registered runs: a name it does not know ends in
    /// [`TaskError::UnknownTask`], known types under another fingerprint in
    /// [`TaskError::WrongTypes`], both at once and without reaching a worker. This holds
    /// also when the workers are a separate binary, which must register the task too.
    /// `options` come over the task's own settings, as for
    /// [`submit_with`](Pool::submit_with). Input bytes that do not decode as the task
    /// end in [`TaskError::Codec`] from the worker, as any task's would.
    ///
    /// # Errors
    /// Hands the task back when the pool is shut down or can no longer start workers.
    pub fn submit_encoded(
        &self,
        task: EncodedTask,
        options: &TaskOptions,
    ) -> Result<EncodedHandle, SubmitError<EncodedTask>> {
        if let Err(kind) = self.gate().acquire(true) {
            return Err(SubmitError::new(task, kind));
        }
        let registration = match task::registered(task.name(), task.types()) {
            Ok(registration) => registration,
            Err(error) => {
                // Known by name or not, it is reported under a name of its own.
                let (_, tasks, ticket) = self.admitted_one("<unregistered task>");
                self.settle_one(tasks, &ticket, error);
                return Ok(EncodedHandle { ticket });
            }
        };
        let (id, _, ticket) = self.admitted_one(registration.name());
        let header = Request::Run {
            id,
            task: registration.name().to_owned(),
            types: task.types(),
            fds: 0,
        };
        let job = Job {
            id,
            attempts: 0,
            options: self.resolve_over(options, &registration.options()),
            ticket: ticket.clone(),
            work: Work::One(Encoded {
                bytes: frame::seal(task.input().to_vec(), &header),
                fds: Vec::new(),
            }),
            types: registration.types(),
            name: registration.name(),
            trace: JobTrace::under(Parent::here()),
        };
        match self.send_one(job) {
            true => Ok(EncodedHandle { ticket }),
            false => Err(SubmitError::new(task, SubmitErrorKind::Closed)),
        }
    }
}

/// The outcome-to-be of a task queued with [`Pool::submit_encoded`]: the output's
/// bytes, or why there are none.
///
/// Dropping a handle does not cancel its task; use [`cancel`](EncodedHandle::cancel).
#[must_use = "the task runs either way, but its outcome is lost unless it is waited for"]
pub struct EncodedHandle {
    ticket: Arc<Ticket>,
}

impl EncodedHandle {
    /// Blocks until the task has an outcome.
    ///
    /// # Errors
    /// Why the task produced no output; see [`TaskError`].
    pub fn wait(self) -> Result<Vec<u8>, TaskError> {
        bytes_of(self.ticket.wait())
    }

    /// Waits up to `timeout`. Hands the handle back (`Err`) if the task is still going.
    ///
    /// # Errors
    /// `Err(self)` when no outcome came in time; the task keeps running.
    pub fn wait_timeout(self, timeout: Duration) -> Result<Result<Vec<u8>, TaskError>, Self> {
        match self.ticket.wait_timeout(timeout) {
            Some(outcome) => Ok(bytes_of(outcome)),
            None => Err(self),
        }
    }

    /// Calls `callback` with the outcome once it is in, from the pool's thread that
    /// records it (or at once, from this one, if it is in already); as
    /// [`TaskHandle::on_complete`](crate::TaskHandle::on_complete).
    pub fn on_complete(self, callback: impl FnOnce(Result<Vec<u8>, TaskError>) + Send + 'static) {
        let ticket = self.ticket.clone();
        completion::call_when_done(&ticket, move || callback(self.wait()));
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

    /// Cancels the task, as [`TaskHandle::cancel`](crate::TaskHandle::cancel) does.
    pub fn cancel(&self) -> bool {
        self.ticket.cancel()
    }
}

impl fmt::Debug for EncodedHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedHandle")
            .field("finished", &self.ticket.is_done())
            .finish()
    }
}

/// The output's bytes of a raw outcome. A task submitted encoded holds no shared
/// buffers, so its output has no descriptors to go with them.
fn bytes_of(outcome: RawOutcome) -> Result<Vec<u8>, TaskError> {
    outcome.map(|output| output.bytes)
}
