//! [`Map`] and [`MapUnordered`]: lazy streams of tasks through a pool, in batches.
//!
//! Inputs are encoded into batches: one frame, one worker, tasks run one after the
//! other. A batch's size adapts to how long its tasks take (about [`BATCH_TIME`] of
//! work; one task while nothing is known yet), so trivial tasks cost a few nanoseconds
//! of overhead each and long ones are spread across the workers one by one. Each task
//! still gets an outcome of its own: a batch answers with one record per task, and a
//! worker that dies mid-batch leaves a journal (`worker::journal`) saying which tasks
//! finished. Only the task that was running fails; those after it run again.
//!
//! The window (`window`) is a few batches per worker in flight (and at least 32 tasks
//! per worker), plus, for the ordered `map`, a budget in bytes for outcomes that wait
//! for an earlier one: a slow or hung task holds its own batches, not the map, and the
//! input is never swallowed whole.

use std::collections::HashMap;
use std::fmt;
use std::iter::Fuse;
use std::marker::PhantomData;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use serde::de::DeserializeOwned;

use super::handle::decode_slice;
use super::job::{Batch, Delivery, JobOptions, Segment, Ticket};
use super::telemetry::{TaskRange, Telemetry};
use super::trace::Parent;
use super::window::{self, Ledger, Limits, Load};
use super::Pool;
use crate::error::{Direction, Side, TaskError};
use crate::slot::event::TaskId;
use crate::task::{self, Task, TaskTypes};
use crate::wire::batch::{self, BATCH_TIME};
use crate::wire::codec;

/// Most tasks in one batch.
pub(crate) const MAX_BATCH_TASKS: usize = 65_536;
/// A batch stops growing once its inputs' encodings reach this size.
pub(crate) const MAX_BATCH_BYTES: usize = 1 << 20;

/// Picks batch sizes from the time the tasks have been taking.
#[derive(Debug)]
struct Sizer {
    /// Mean worker time per task lately, in nanoseconds; `None` before any batch is
    /// back.
    per_task: Option<f64>,
    /// Encoded bytes per input lately: a batch's inputs stay under
    /// `MAX_BATCH_BYTES`, so the window's bytes stay bounded too.
    bytes_per_task: f64,
    /// A pool that recycles workers after this many tasks gets batches no bigger.
    cap: usize,
}

impl Sizer {
    fn new(pool: &Pool) -> Sizer {
        let cap = pool.max_tasks_per_worker().map_or(MAX_BATCH_TASKS, |max| {
            usize::try_from(max)
                .unwrap_or(usize::MAX)
                .clamp(1, MAX_BATCH_TASKS)
        });
        Sizer {
            per_task: None,
            bytes_per_task: 1.0,
            cap,
        }
    }

    fn batch_len(&self) -> usize {
        match self.per_task {
            None => 1,
            Some(nanos) => {
                let in_time = BATCH_TIME.as_nanos() as f64 / nanos.max(1.0);
                let in_bytes = MAX_BATCH_BYTES as f64 / self.bytes_per_task.max(1.0);
                (in_time.min(in_bytes) as usize).clamp(1, self.cap)
            }
        }
    }

    /// About how many inputs fit in `bytes`, judging from those so far.
    fn tasks_in(&self, bytes: usize) -> usize {
        (bytes as f64 / self.bytes_per_task.max(1.0)) as usize
    }

    fn observe_bytes(&mut self, bytes: usize, tasks: usize) {
        if tasks > 0 {
            let latest = bytes as f64 / tasks as f64;
            self.bytes_per_task = 0.5 * self.bytes_per_task + 0.5 * latest;
        }
    }

    fn observe(&mut self, nanos: u64, tasks: usize) {
        if tasks == 0 {
            return;
        }
        let latest = nanos as f64 / tasks as f64;
        self.per_task = Some(
            self.per_task
                .map_or(latest, |mean| 0.5 * mean + 0.5 * latest),
        );
    }
}

/// The part both maps share: batching inputs and collecting deliveries.
struct Stream<'p, I: Iterator> {
    pool: &'p Pool,
    inputs: Fuse<I>,
    /// Batches in flight allowed.
    batches: usize,
    /// Tasks in flight allowed however small the batches (see `fill`).
    min_window: usize,
    /// The cost of outcomes held back for order allowed (see `window`).
    held_budget: usize,
    sizer: Sizer,
    tx: Sender<Delivery>,
    rx: Receiver<Delivery>,
    /// Inputs pulled so far (the next input's index).
    pulled: usize,
    /// Outcomes received from batches so far.
    received: usize,
    /// Outcomes handed to the caller so far.
    yielded: usize,
    /// The batches in flight.
    ledger: Ledger,
    /// What the outcomes the ordered `map` holds back for order cost
    /// (`window::held_cost`), kept by `Map`.
    held_bytes: usize,
    /// Tickets of the batches sent, to cancel if the map is dropped.
    running: Vec<Arc<Ticket>>,
    /// The fingerprint of the tasks' types, or why they cannot be sent (see
    /// `task::fingerprint_of`).
    types: Result<u64, TaskError>,
    /// What every batch runs with: the pool's settings, or the map's own.
    options: JobOptions,
    /// The map's number, for events.
    id: u64,
    /// The map's span, with the `tracing` feature: its batches' spans go under it.
    span: Parent,
}

impl<'p, I> Stream<'p, I>
where
    I: Iterator,
    I::Item: Task,
{
    fn new(pool: &'p Pool, inputs: I, options: JobOptions) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        let id = pool.new_id();
        Stream {
            pool,
            inputs: inputs.fuse(),
            batches: pool
                .workers()
                .saturating_mul(window::BATCHES_PER_WORKER)
                .max(2),
            min_window: pool
                .workers()
                .saturating_mul(window::MIN_WINDOW_PER_WORKER)
                .max(1),
            held_budget: pool.workers().saturating_mul(window::HELD_BYTES_PER_WORKER),
            sizer: Sizer::new(pool),
            tx,
            rx,
            pulled: 0,
            received: 0,
            yielded: 0,
            ledger: Ledger::default(),
            held_bytes: 0,
            running: Vec::new(),
            types: task::fingerprint_of::<I::Item>(pool.registry_here()),
            options,
            id,
            span: Parent::map(<I::Item as Task>::NAME, id),
        }
    }

    /// Makes and sends batches while the window has room.
    fn fill(&mut self) {
        loop {
            let size = self.sizer.batch_len();
            // Small batches get a window of at least `MIN_WINDOW_PER_WORKER` tasks per
            // worker, while their inputs stay within the bytes of the batches.
            let floor = self
                .min_window
                .min(self.sizer.tasks_in(self.batches * MAX_BATCH_BYTES));
            let limits = Limits {
                batches: self.batches,
                floor,
                held_bytes: self.held_budget,
            };
            // What is really out: outcomes received count as in, whether yielded or
            // held back for order, which has a budget of its own.
            let load = Load {
                batches: self.ledger.batches(),
                tasks: self.pulled - self.received,
                held_bytes: self.held_bytes,
            };
            if !window::may_send(load, size, limits) {
                return;
            }
            if !self.send_batch(size) {
                return;
            }
        }
    }

    /// Pulls up to `size` inputs into one batch and sends it; `false` once the input
    /// has run out.
    fn send_batch(&mut self, size: usize) -> bool {
        let first = self.pulled;
        let mut items = Vec::new();
        let mut count = 0;
        while count < size && items.len() < MAX_BATCH_BYTES {
            let Some(task) = self.inputs.next() else {
                break;
            };
            self.pulled += 1;
            if let Err(message) = batch::push_item(&mut items, |buf| codec::encode_into(&task, buf))
            {
                // This input cannot go; the batch ends before it and it fails alone.
                let error = TaskError::Codec {
                    side: Side::Parent,
                    direction: Direction::ToWorker,
                    message,
                };
                self.submit(items, count, first);
                self.deliver_here(first + count, 1, error);
                return true;
            }
            count += 1;
        }
        if count == 0 {
            return false;
        }
        self.submit(items, count, first);
        true
    }

    fn submit(&mut self, items: Vec<u8>, count: usize, first: usize) {
        if count == 0 {
            return;
        }
        let types = match &self.types {
            Ok(types) => *types,
            Err(error) => return self.deliver_here(first, count, error.clone()),
        };
        self.sizer.observe_bytes(items.len(), count);
        let batch = Batch::new(
            <I::Item as Task>::NAME,
            types,
            items,
            count,
            first,
            self.tx.clone(),
        )
        .of_map(self.id);
        let span = self.span.clone();
        match self
            .pool
            .enqueue_batch(batch, TaskTypes::of::<I::Item>(), self.options, span)
        {
            Ok(ticket) => {
                self.ledger.sent(first, count);
                if self.running.len() >= 2 * self.batches {
                    self.running.retain(|t| !t.is_done());
                }
                self.running.push(ticket);
            }
            Err(error) => self.deliver_here(first, count, error),
        }
    }

    /// Outcomes decided in the map itself (an input that cannot be encoded, a pool that
    /// refuses work).
    fn deliver_here(&self, index: usize, count: usize, error: TaskError) {
        let tasks = TaskRange {
            name: <I::Item as Task>::NAME,
            first: TaskId::Mapped {
                map: self.id,
                index,
            },
            count,
        };
        let telemetry = self.pool.telemetry();
        telemetry.accepted(count);
        telemetry.settled_here(tasks, &error);
        let segment = Segment::Failed { count, error };
        self.tx
            .send(Delivery {
                index,
                segment,
                timing: None,
            })
            .expect("the stream holds the receiver");
    }

    /// The next delivery in completion order; `None` when every input has its outcome.
    fn next_delivery(&mut self) -> Option<Delivery> {
        self.fill();
        if self.received == self.pulled {
            return None;
        }
        let delivery = self
            .rx
            .recv()
            .expect("the stream holds a sender, so the channel stays open");
        self.received += delivery.segment.len();
        self.ledger.received(delivery.index, delivery.segment.len());
        if let Some((nanos, tasks)) = delivery.timing {
            self.sizer.observe(nanos, tasks);
        }
        Some(delivery)
    }
}

impl<I: Iterator> Drop for Stream<'_, I> {
    fn drop(&mut self) {
        for ticket in &self.running {
            ticket.cancel();
        }
    }
}

/// Hands out the outcomes of one delivery, one task at a time.
#[derive(Debug)]
struct Cursor {
    index: usize,
    left: usize,
    outcomes: Outcomes,
}

#[derive(Debug)]
enum Outcomes {
    Records { records: Vec<u8>, at: usize },
    Failed(TaskError),
}

impl Cursor {
    fn new(delivery: Delivery) -> Cursor {
        let left = delivery.segment.len();
        let outcomes = match delivery.segment {
            Segment::Records { records, .. } => Outcomes::Records { records, at: 0 },
            Segment::Failed { error, .. } => Outcomes::Failed(error),
        };
        Cursor {
            index: delivery.index,
            left,
            outcomes,
        }
    }

    /// The next outcome, of a task of `types`; an output that does not decode is
    /// counted in `telemetry` as the caller gets it, a codec error.
    fn next<O: DeserializeOwned>(
        &mut self,
        types: TaskTypes,
        telemetry: &Telemetry,
    ) -> Option<(usize, Result<O, TaskError>)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let index = self.index;
        self.index += 1;
        let outcome = match &mut self.outcomes {
            Outcomes::Failed(error) => Err(error.clone()),
            Outcomes::Records { records, at } => {
                let mut entries = batch::Entries::new(&records[*at..]);
                let entry = entries.next().flatten();
                *at = records.len() - entries.remaining();
                let record =
                    entry.map(|entry| batch::read_record(entry).into_result(|| types.describe()));
                match record {
                    Some(Ok(body)) => decode_slice(body).inspect_err(|_| telemetry.undecodable()),
                    Some(Err(error)) => Err(error),
                    // The supervisor checked the records, so this cannot happen.
                    None => Err(TaskError::Protocol {
                        message: "a batch response ran short of records".to_owned(),
                    }),
                }
            }
        };
        Some((index, outcome))
    }
}

/// Outcomes of [`Pool::map`], in input order.
#[must_use = "a map is lazy: it pulls no input and runs nothing until it is iterated"]
pub struct Map<'p, I: Iterator>
where
    I::Item: Task,
{
    stream: Stream<'p, I>,
    /// Deliveries that came before their turn, by the index of their first task (and
    /// the next one in turn, for a moment).
    ready: HashMap<usize, Delivery>,
    current: Option<Cursor>,
    _output: PhantomData<fn() -> <I::Item as Task>::Output>,
}

impl<'p, I> Map<'p, I>
where
    I: Iterator,
    I::Item: Task,
{
    pub(crate) fn new(pool: &'p Pool, inputs: I, options: JobOptions) -> Self {
        Map {
            stream: Stream::new(pool, inputs, options),
            ready: HashMap::new(),
            current: None,
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
        loop {
            if let Some(cursor) = &mut self.current {
                let telemetry = self.stream.pool.telemetry();
                if let Some((_, outcome)) = cursor.next(TaskTypes::of::<I::Item>(), telemetry) {
                    self.stream.yielded += 1;
                    return Some(outcome);
                }
                self.current = None;
            }
            // Deliveries tile the inputs, so the next one in order starts exactly here.
            if let Some(delivery) = self.ready.remove(&self.stream.yielded) {
                self.stream.held_bytes -= window::held_cost(&delivery);
                self.current = Some(Cursor::new(delivery));
                continue;
            }
            // The window counts what `ready` holds against a budget of its own: the
            // outcomes behind a slow task wait here while the other workers go on.
            let delivery = self.stream.next_delivery()?;
            self.stream.held_bytes += window::held_cost(&delivery);
            self.ready.insert(delivery.index, delivery);
        }
    }
}

/// Outcomes of [`Pool::map_unordered`]: `(input index, outcome)` as tasks finish.
#[must_use = "a map is lazy: it pulls no input and runs nothing until it is iterated"]
pub struct MapUnordered<'p, I: Iterator>
where
    I::Item: Task,
{
    stream: Stream<'p, I>,
    current: Option<Cursor>,
    _output: PhantomData<fn() -> <I::Item as Task>::Output>,
}

impl<'p, I> MapUnordered<'p, I>
where
    I: Iterator,
    I::Item: Task,
{
    pub(crate) fn new(pool: &'p Pool, inputs: I, options: JobOptions) -> Self {
        MapUnordered {
            stream: Stream::new(pool, inputs, options),
            current: None,
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
        loop {
            if let Some(cursor) = &mut self.current {
                let telemetry = self.stream.pool.telemetry();
                if let Some(item) = cursor.next(TaskTypes::of::<I::Item>(), telemetry) {
                    self.stream.yielded += 1;
                    return Some(item);
                }
            }
            let delivery = self.stream.next_delivery()?;
            self.current = Some(Cursor::new(delivery));
        }
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
