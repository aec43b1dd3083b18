//! [`TaskFuture`]: a [`TaskHandle`] awaited (feature `async`).
//!
//! The future leaves its waker on the task's ticket (`Ticket::poll_outcome`); the slot
//! that records the outcome wakes it. Nothing polls and no thread waits.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;

use super::handle::{decode_counted, TaskHandle};
use super::job::Ticket;
use crate::error::TaskError;

/// The outcome of a submitted task, awaited: what `handle.await` polls.
///
/// ```no_run
/// # async fn demo<T: procpool::Task>(pool: &procpool::Pool, task: T)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// let output = pool.submit_async(task).await?.await?;
/// # let _ = output; Ok(()) }
/// ```
///
/// # Dropping it cancels the task
///
/// A `TaskFuture` dropped before its outcome is in [cancels](TaskHandle::cancel) its
/// task, as dropping a [`Map`](crate::Map) cancels the tasks it has out: a task whose
/// outcome nobody can receive any more should not hold a worker. So a timeout or a
/// `select!` arm that loses stops the work, and frees the worker (a running task's
/// worker is killed and replaced):
///
/// ```no_run
/// # async fn demo<T: procpool::Task>(pool: &procpool::Pool, task: T)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
///
/// let handle = pool.submit_async(task).await?;
/// match tokio::time::timeout(Duration::from_secs(5), handle).await {
///     Ok(outcome) => { outcome?; }
///     // The future was dropped: the task is cancelled, its worker freed.
///     Err(_elapsed) => {}
/// }
/// # Ok(()) }
/// ```
///
/// To wait a while and let the task go on, keep the future and lend it: a
/// `TaskFuture` is `Unpin`, so `&mut future` is a future too, and the timeout drops
/// only the reference. The future may then be awaited again, or dropped to cancel.
/// Or keep the [`TaskHandle`] itself, which does not cancel when dropped, and turn it
/// into a future only to await it to the end.
///
/// ```no_run
/// # async fn demo<T: procpool::Task>(pool: &procpool::Pool, task: T)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// # use std::time::Duration;
/// use std::future::IntoFuture;
///
/// let mut future = pool.submit_async(task).await?.into_future();
/// if tokio::time::timeout(Duration::from_secs(1), &mut future).await.is_err() {
///     eprintln!("still running after a second");
///     let output = future.await?;
///     # let _ = output;
/// }
/// # Ok(()) }
/// ```
///
/// # Waking
///
/// A task keeps one waker, the latest: a future polled again with a new waker (moved
/// to another task of the executor, say) is woken through that one. A handle is
/// awaited, or watched by [`as_completed`](crate::as_completed) or
/// [`TaskHandle::wait_any`], never both at once: `into_future` and `as_completed` take
/// the handle, and `wait_any` borrows its vector for as long as it waits. So no two of
/// them compete for that one waker; a handle taken out of the vector after a
/// `wait_any` may be awaited, its first poll replacing the waker `wait_any` left.
///
/// Polling it after it returned `Ready` panics, as for most futures;
/// [`FusedFuture::is_terminated`](futures_core::future::FusedFuture) says when it has.
#[must_use = "futures do nothing unless awaited; dropping this one cancels its task"]
pub struct TaskFuture<O> {
    ticket: Arc<Ticket>,
    /// The outcome was taken: nothing to cancel, nothing more to give.
    finished: bool,
    _output: PhantomData<fn() -> O>,
}

impl<O: DeserializeOwned> IntoFuture for TaskHandle<O> {
    type Output = Result<O, TaskError>;
    type IntoFuture = TaskFuture<O>;

    /// The task's outcome, as a future; dropped before the outcome is in, it cancels
    /// the task (see [`TaskFuture`]).
    fn into_future(self) -> TaskFuture<O> {
        TaskFuture {
            ticket: self.ticket,
            finished: false,
            _output: PhantomData,
        }
    }
}

impl<O: DeserializeOwned> Future for TaskFuture<O> {
    type Output = Result<O, TaskError>;

    /// # Panics
    /// If polled again after it returned `Ready`.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.finished, "a TaskFuture was polled after it completed");
        let outcome = std::task::ready!(this.ticket.poll_outcome(cx.waker()));
        this.finished = true;
        Poll::Ready(decode_counted(&this.ticket, outcome))
    }
}

impl<O: DeserializeOwned> futures_core::future::FusedFuture for TaskFuture<O> {
    fn is_terminated(&self) -> bool {
        self.finished
    }
}

impl<O> TaskFuture<O> {
    /// Whether the task has an outcome (so the next poll is `Ready`), or the future has
    /// already given it.
    pub fn is_finished(&self) -> bool {
        self.finished || self.ticket.is_done()
    }
}

impl<O> Drop for TaskFuture<O> {
    fn drop(&mut self) {
        if !self.finished {
            self.ticket.cancel();
        }
    }
}

impl<O> fmt::Debug for TaskFuture<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskFuture")
            .field("finished", &self.is_finished())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::job::Encoded;
    use crate::pool::wakeup::counting;
    use crate::wire::codec;

    fn running() -> (Arc<Ticket>, TaskFuture<u64>) {
        let ticket = Arc::new(Ticket::new(None));
        assert!(ticket.start());
        let future = TaskHandle::<u64>::new(ticket.clone()).into_future();
        (ticket, future)
    }

    #[test]
    fn the_latest_waker_is_woken_with_the_outcome() {
        let (ticket, mut future) = running();
        let (first, first_waker) = counting::waker();
        let (second, second_waker) = counting::waker();
        let mut cx = Context::from_waker(&first_waker);
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        let mut cx = Context::from_waker(&second_waker);
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        let mut bytes = Vec::new();
        let fds = codec::encode_with_fds(&7u64, &mut bytes).unwrap();
        ticket.complete(Ok(Encoded { bytes, fds }));
        assert_eq!(first.get(), 0);
        assert_eq!(second.get(), 1);
        assert!(future.is_finished());
        assert_eq!(Pin::new(&mut future).poll(&mut cx), Poll::Ready(Ok(7)));
        // Finished: dropping it cancels nothing (the outcome stands).
        drop(future);
        assert!(!ticket.cancel());
    }

    #[test]
    fn dropping_it_unfinished_cancels_the_task() {
        let (ticket, future) = running();
        drop(future);
        assert!(ticket.is_cancel_requested());
        // Queued tasks end at once.
        let queued = Arc::new(Ticket::new(None));
        drop(TaskHandle::<u64>::new(queued.clone()).into_future());
        assert_eq!(queued.wait().unwrap_err(), TaskError::Cancelled);
    }
}
