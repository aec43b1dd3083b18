//! [`MapStream`]: the outcomes of a [`Map`] or a [`MapUnordered`] as a
//! `futures_core::Stream` (feature `async`).
//!
//! A map polled as a stream does what it does as an iterator, without blocking the
//! executor's thread: it waits for an in-flight place in the gate's queue of wakers,
//! and for outcomes with its waker left in its mailbox, which every delivery wakes.
//!
//! The stream is a type of its own rather than the maps themselves: a type that were
//! both an `Iterator` and a `Stream` would make `next`, `map`, `collect` and the rest
//! ambiguous wherever `StreamExt` is in scope.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::stream::{FusedStream, Stream};

use super::map::{Map, MapUnordered};
use crate::error::TaskError;
use crate::task::Task;

/// The outcomes of a map as a `futures_core::Stream`, the same as the map yields as an
/// iterator, awaited without blocking a thread: from [`Map::into_stream`] (in input
/// order) or [`MapUnordered::into_stream`] (`(input index, outcome)` as tasks finish).
/// With the feature `progress`, `Progress::into_stream` makes a map drawn as a progress
/// bar a stream too, with the same bar.
///
/// Dropping it cancels the tasks it still has in flight, as dropping the map does.
///
/// A map borrows its pool. To drive one from a task of its own (`tokio::spawn` wants a
/// `'static` future), move the pool, or an `Arc<Pool>`, into that task and start the
/// map there:
///
/// ```no_run
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)]
/// # struct Square(u64);
/// # impl procpool::Task for Square {
/// #     const NAME: &'static str = "stream::Square";
/// #     type Output = u64;
/// #     fn run(self) -> Result<u64, procpool::BoxError> { Ok(self.0 * self.0) }
/// # }
/// # async fn demo(pool: procpool::Pool) -> anyhow::Result<()> {
/// use std::sync::Arc;
/// use futures::StreamExt;
///
/// let pool = Arc::new(pool);
/// let sum = tokio::spawn({
///     let pool = pool.clone();
///     async move {
///         let mut outcomes = pool.map_unordered((0..1000).map(Square)).into_stream();
///         let mut sum = 0;
///         while let Some((_index, outcome)) = outcomes.next().await {
///             sum += outcome?;
///         }
///         anyhow::Ok(sum)
///     }
/// });
/// let sum = sum.await??;
/// # let _ = sum; Ok(()) }
/// ```
///
/// The map pulls its inputs on the executor's thread, in the polls that find room for
/// them (it looks at the next one ahead, to know whether there is one), so the input
/// iterator should not block.
///
/// A stream that returned `Pending` for want of room in the pool (at its
/// [in-flight limit](crate::PoolBuilder::max_in_flight)) holds a turn in the pool's
/// queue, as a pending [`submit_async`](crate::Pool::submit_async) does, until it is
/// polled again or dropped: a place freed wakes it, not the others waiting. Poll it
/// on, or drop it, rather than leave it pending while other tasks wait to submit. Once it yields an
/// outcome it holds no turn.
#[must_use = "streams do nothing unless polled: a map pulls no input until then"]
pub struct MapStream<M>(pub(super) M);

impl<'p, I> MapStream<Map<'p, I>>
where
    I: Iterator,
    I::Item: Task,
{
    /// The map back, to be iterated (blocking) from where the stream left it. A turn
    /// the stream held in the pool's queue is given up (a wake-up it had goes to the
    /// next in the queue).
    pub fn into_inner(mut self) -> Map<'p, I> {
        self.0.leave_gate();
        self.0
    }
}

impl<'p, I> MapStream<MapUnordered<'p, I>>
where
    I: Iterator,
    I::Item: Task,
{
    /// The map back, to be iterated (blocking) from where the stream left it. A turn
    /// the stream held in the pool's queue is given up (a wake-up it had goes to the
    /// next in the queue).
    pub fn into_inner(mut self) -> MapUnordered<'p, I> {
        self.0.leave_gate();
        self.0
    }
}

impl<'p, I> Map<'p, I>
where
    I: Iterator,
    I::Item: Task,
{
    /// The outcomes as a stream, in input order, awaited without blocking a thread
    /// (feature `async`; see [`MapStream`]).
    pub fn into_stream(self) -> MapStream<Self> {
        MapStream(self)
    }
}

impl<'p, I> MapUnordered<'p, I>
where
    I: Iterator,
    I::Item: Task,
{
    /// The outcomes as a stream, `(input index, outcome)` as tasks finish, awaited
    /// without blocking a thread (feature `async`; see [`MapStream`]).
    pub fn into_stream(self) -> MapStream<Self> {
        MapStream(self)
    }
}

impl<I> Stream for MapStream<Map<'_, I>>
where
    I: Iterator,
    I::Item: Task,
{
    type Item = Result<<I::Item as Task>::Output, TaskError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().0.poll_outcome(cx.waker())
    }
}

impl<I> FusedStream for MapStream<Map<'_, I>>
where
    I: Iterator,
    I::Item: Task,
{
    fn is_terminated(&self) -> bool {
        self.0.is_over()
    }
}

impl<I> Stream for MapStream<MapUnordered<'_, I>>
where
    I: Iterator,
    I::Item: Task,
{
    type Item = (usize, Result<<I::Item as Task>::Output, TaskError>);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().0.poll_outcome(cx.waker())
    }
}

impl<I> FusedStream for MapStream<MapUnordered<'_, I>>
where
    I: Iterator,
    I::Item: Task,
{
    fn is_terminated(&self) -> bool {
        self.0.is_over()
    }
}

/// The inputs are never pinned: a map pulls them through `&mut`, like any iterator.
impl<I> Unpin for Map<'_, I>
where
    I: Iterator,
    I::Item: Task,
{
}

/// As for [`Map`].
impl<I> Unpin for MapUnordered<'_, I>
where
    I: Iterator,
    I::Item: Task,
{
}

impl<M: fmt::Debug> fmt::Debug for MapStream<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MapStream").field(&self.0).finish()
    }
}
