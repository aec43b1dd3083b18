//! [`Pool::submit_async`]: a submit that awaits room instead of blocking a thread
//! (feature `async`), and [`SubmitFuture`], what it returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::gate::Turn;
use super::handle::TaskHandle;
use super::job::JobOptions;
use super::options::TaskOptions;
use super::Pool;
use crate::error::SubmitError;
use crate::task::Task;

impl Pool {
    /// Queues a task, awaiting room if the pool is at its
    /// [in-flight limit](crate::PoolBuilder::max_in_flight): the async form of
    /// [`submit`](Pool::submit), which blocks its thread there instead (feature
    /// `async`).
    ///
    /// ```no_run
    /// # async fn demo<T: procpool::Task>(pool: &procpool::Pool, tasks: Vec<T>)
    /// # -> Result<(), Box<dyn std::error::Error>> {
    /// let mut handles = Vec::new();
    /// for task in tasks {
    ///     // Waits here, without a thread, while the pool is full.
    ///     handles.push(pool.submit_async(task).await?);
    /// }
    /// for handle in handles {
    ///     let output = handle.await?;
    ///     # let _ = output;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// The returned future waits in a queue of the pool's gate, and a freed place
    /// wakes the first one waiting. It holds no place while it waits: dropped, it
    /// leaves the queue (or, if it was just woken, wakes the next in its stead), so a
    /// submit given up on costs nothing. Encoding the task happens in the poll that
    /// finds room, on the executor's thread, as `submit` does on the caller's.
    ///
    /// # Errors
    /// Hands the task back when the pool is shut down or can no longer start workers,
    /// whether it was so at once or became so while the future waited.
    pub fn submit_async<T: Task>(&self, task: T) -> SubmitFuture<'_, T> {
        self.submit_async_with(task, &TaskOptions::new())
    }

    /// Like [`submit_async`](Pool::submit_async), with `options` in place of the pool's
    /// settings where they are set (see [`submit_with`](Pool::submit_with)).
    ///
    /// # Errors
    /// Hands the task back when the pool is shut down or can no longer start workers.
    pub fn submit_async_with<T: Task>(
        &self,
        task: T,
        options: &TaskOptions,
    ) -> SubmitFuture<'_, T> {
        SubmitFuture {
            pool: self,
            task: Some(task),
            options: self.resolve::<T>(options),
            turn: Turn::new(self.gate()),
        }
    }
}

/// A submit awaiting room in the pool: what [`Pool::submit_async`] returns. Its output
/// is the task's [`TaskHandle`], or the task handed back in a [`SubmitError`].
///
/// It is lazy: the task is queued in the poll that finds room. It holds no in-flight
/// place while it waits, so dropping it (a timeout, a `select!` arm that lost) leaves
/// the pool as it was, the task not submitted. While pending it holds a turn in the
/// pool's queue: a place freed wakes it, not those behind it, until it is polled again
/// or dropped. So a pending submit should be awaited on, not left aside.
#[must_use = "futures do nothing unless awaited: the task is not submitted until then"]
pub struct SubmitFuture<'p, T> {
    pool: &'p Pool,
    /// `None` once the future has given its output.
    task: Option<T>,
    options: JobOptions,
    turn: Turn<'p>,
}

impl<T: Task> Future for SubmitFuture<'_, T> {
    type Output = Result<TaskHandle<T::Output>, SubmitError<T>>;

    /// # Panics
    /// If polled again after it returned `Ready`.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // Checked before the turn is polled: a place taken here would never be given back.
        assert!(
            this.task.is_some(),
            "a SubmitFuture was polled after it completed"
        );
        let admitted = std::task::ready!(this.turn.poll(cx.waker()));
        let task = this.task.take().expect("checked above");
        Poll::Ready(match admitted {
            Ok(()) => this
                .pool
                .enqueue_admitted(task, this.options)
                .map(TaskHandle::new),
            Err(kind) => Err(SubmitError::new(task, kind)),
        })
    }
}

impl<T: Task> futures_core::future::FusedFuture for SubmitFuture<'_, T> {
    fn is_terminated(&self) -> bool {
        self.task.is_none()
    }
}

/// The task is never pinned: it is moved out whole when the future completes.
impl<T> Unpin for SubmitFuture<'_, T> {}

impl<T> fmt::Debug for SubmitFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitFuture")
            .field("submitted", &self.task.is_none())
            .finish_non_exhaustive()
    }
}
