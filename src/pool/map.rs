//! [`Map`] and [`MapUnordered`]: lazy streams of tasks through a pool.
//!
//! Both keep a window of at most a few tasks per worker in flight and pull the next
//! input only when an outcome frees a place, so the input is never swallowed whole.

use std::collections::HashMap;
use std::fmt;
use std::iter::Fuse;
use std::marker::PhantomData;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::handle::decode_output;
use super::job::{RawOutcome, Sink, Ticket};
use super::Pool;
use crate::error::TaskError;
use crate::task::Task;

/// Tasks in flight per worker: enough to keep each worker's pipeline fed (the slot sends
/// short tasks ahead of the running one) while outcomes travel back.
pub(crate) const WINDOW_PER_WORKER: usize = 32;

/// The part both maps share: feeding inputs and collecting raw outcomes.
struct Stream<'p, I: Iterator> {
    pool: &'p Pool,
    inputs: Fuse<I>,
    window: usize,
    tx: Sender<(usize, RawOutcome)>,
    rx: Receiver<(usize, RawOutcome)>,
    /// Inputs pulled so far (the next input's index).
    pulled: usize,
    /// Outcomes handed to the caller so far.
    yielded: usize,
    /// Tickets without an outcome yet, to cancel if the map is dropped.
    running: HashMap<usize, Arc<Ticket>>,
}

impl<'p, I> Stream<'p, I>
where
    I: Iterator,
    I::Item: Task,
{
    fn new(pool: &'p Pool, inputs: I) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Stream {
            pool,
            inputs: inputs.fuse(),
            window: pool.workers().saturating_mul(WINDOW_PER_WORKER).max(1),
            tx,
            rx,
            pulled: 0,
            yielded: 0,
            running: HashMap::new(),
        }
    }

    /// Pulls and submits inputs while the window has room.
    fn fill(&mut self) {
        while self.pulled - self.yielded < self.window {
            let Some(task) = self.inputs.next() else {
                return;
            };
            let index = self.pulled;
            self.pulled += 1;
            let sink = Sink {
                index,
                tx: self.tx.clone(),
            };
            match self.pool.enqueue(task, true, Some(sink)) {
                Ok(ticket) => {
                    if !ticket.is_done() {
                        self.running.insert(index, ticket);
                    }
                }
                Err(refused) => {
                    let _ = self.tx.send((index, Err(TaskError::from(refused))));
                }
            }
        }
    }

    /// The next raw outcome in completion order; `None` when every input is done.
    fn next_raw(&mut self) -> Option<(usize, RawOutcome)> {
        self.fill();
        if self.yielded == self.pulled {
            return None;
        }
        let (index, outcome) = self
            .rx
            .recv()
            .expect("the stream holds a sender, so the channel stays open");
        self.running.remove(&index);
        Some((index, outcome))
    }
}

impl<I: Iterator> Drop for Stream<'_, I> {
    fn drop(&mut self) {
        for ticket in self.running.values() {
            ticket.cancel();
        }
    }
}

/// Outcomes of [`Pool::map`], in input order.
pub struct Map<'p, I: Iterator>
where
    I::Item: Task,
{
    stream: Stream<'p, I>,
    ready: HashMap<usize, RawOutcome>,
    _output: PhantomData<fn() -> <I::Item as Task>::Output>,
}

impl<'p, I> Map<'p, I>
where
    I: Iterator,
    I::Item: Task,
{
    pub(crate) fn new(pool: &'p Pool, inputs: I) -> Self {
        Map {
            stream: Stream::new(pool, inputs),
            ready: HashMap::new(),
            _output: PhantomData,
        }
    }
}

impl<I> Iterator for Map<'_, I>
where
    I: Iterator,
    I::Item: Task,
{
    type Item = Result<<I::Item as Task>::Output, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        let want = self.stream.yielded;
        loop {
            if let Some(outcome) = self.ready.remove(&want) {
                self.stream.yielded += 1;
                return Some(decode_output(outcome));
            }
            // The window counts outcomes held here, so `ready` stays small.
            let (index, outcome) = self.stream.next_raw()?;
            self.ready.insert(index, outcome);
        }
    }
}

/// Outcomes of [`Pool::map_unordered`]: `(input index, outcome)` as tasks finish.
pub struct MapUnordered<'p, I: Iterator>
where
    I::Item: Task,
{
    stream: Stream<'p, I>,
    _output: PhantomData<fn() -> <I::Item as Task>::Output>,
}

impl<'p, I> MapUnordered<'p, I>
where
    I: Iterator,
    I::Item: Task,
{
    pub(crate) fn new(pool: &'p Pool, inputs: I) -> Self {
        MapUnordered {
            stream: Stream::new(pool, inputs),
            _output: PhantomData,
        }
    }
}

impl<I> Iterator for MapUnordered<'_, I>
where
    I: Iterator,
    I::Item: Task,
{
    type Item = (usize, Result<<I::Item as Task>::Output, TaskError>);

    fn next(&mut self) -> Option<Self::Item> {
        let (index, outcome) = self.stream.next_raw()?;
        self.stream.yielded += 1;
        Some((index, decode_output(outcome)))
    }
}

impl<I: Iterator> fmt::Debug for Map<'_, I>
where
    I::Item: Task,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("pulled", &self.stream.pulled)
            .field("yielded", &self.stream.yielded)
            .finish_non_exhaustive()
    }
}

impl<I: Iterator> fmt::Debug for MapUnordered<'_, I>
where
    I::Item: Task,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapUnordered")
            .field("pulled", &self.stream.pulled)
            .field("yielded", &self.stream.yielded)
            .finish_non_exhaustive()
    }
}
