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
//! Tasks may hold shared arrays: a batch's frame carries the descriptors of all its
//! tasks' arrays, a memory several of them share once (`wire::fds`), and ends before a
//! task that would bring more than a frame carries.
//!
//! The window (`window`) is a few batches per worker in flight (and at least 32 tasks
//! per worker), plus, for the ordered `map`, a budget in bytes for outcomes that wait
//! for an earlier one: a slow or hung task holds its own batches, not the map, and the
//! input is never swallowed whole.

use std::collections::HashMap;
use std::fmt;
use std::iter::Peekable;
use std::marker::PhantomData;
use std::sync::Arc;
#[cfg(feature = "async")]
use std::task::Waker;
use std::task::{ready, Poll};

use serde::de::DeserializeOwned;
use serde::Serialize;

#[cfg(feature = "async")]
use super::gate::Turn;
use super::handle::decode_slice;
use super::job::{Batch, JobOptions, Ticket};
use super::mailbox::{self, Delivery, Mailbox, Outbox, Segment};
use super::telemetry::Telemetry;
use super::trace::Parent;
use super::window::{self, Ledger, Limits, Load};
use super::Pool;
use crate::error::{Direction, Side, SubmitError, SubmitErrorKind, TaskError};
use crate::slot::event::{TaskId, TaskRange};
use crate::task::{self, Task, TaskTypes};
use crate::wire::batch::{self, BATCH_TIME};
use crate::wire::codec;
use crate::wire::fds::{self, Outgoing, MAX_FRAME_FDS};

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

/// Encodes a map's input into `buf`: with `fds` as its descriptor table once an input
/// of the map has held a shared buffer (`shares`); until then without, and again with
/// it if this input turns out to hold one.
fn encode_input<T: Serialize>(
    input: &T,
    buf: &mut Vec<u8>,
    fds: &mut Outgoing,
    shares: &mut bool,
) -> Result<(), String> {
    if !*shares {
        let start = buf.len();
        match codec::encode_into(input, buf) {
            Err(message) if fds::is_not_here(&message) => {
                buf.truncate(start);
                *shares = true;
            }
            encoded => return encoded,
        }
    }
    codec::encode_into_table(input, buf, fds)
}

/// The part both maps share: the feed of inputs, in batches, to the pool, and the
/// deliveries of their outcomes back.
struct Feed<'p, I: Iterator> {
    pool: &'p Pool,
    /// The inputs, the next one looked at before an in-flight place is taken for it: a
    /// map whose input has run out must not wait for a place to learn it.
    inputs: Peekable<I>,
    /// The inputs have run out.
    exhausted: bool,
    /// Whether an input has held a shared buffer: from then on every input is encoded
    /// with its batch's descriptor table. Until then none is, which costs nothing.
    shares: bool,
    /// Batches in flight allowed.
    batches: usize,
    /// Tasks in flight allowed however small the batches (see `fill`).
    min_window: usize,
    /// The cost of outcomes held back for order allowed (see `window`).
    held_budget: usize,
    sizer: Sizer,
    outbox: Outbox,
    mailbox: Mailbox,
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
    /// A map polled as a stream waits here for an in-flight place, without a thread.
    #[cfg(feature = "async")]
    turn: Option<Turn<'p>>,
    /// The map's number, for events.
    id: u64,
    /// The map's span, with the `tracing` feature: its batches' spans go under it.
    span: Parent,
}

impl<'p, I> Feed<'p, I>
where
    I: Iterator,
    I::Item: Task,
{
    fn new(pool: &'p Pool, inputs: I, options: JobOptions) -> Self {
        let (outbox, mailbox) = mailbox::channel();
        let id = pool.new_id();
        Feed {
            pool,
            inputs: inputs.peekable(),
            exhausted: false,
            shares: false,
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
            outbox,
            mailbox,
            pulled: 0,
            received: 0,
            yielded: 0,
            ledger: Ledger::default(),
            held_bytes: 0,
            running: Vec::new(),
            types: task::fingerprint_of::<I::Item>(pool.registry_here()),
            options,
            #[cfg(feature = "async")]
            turn: None,
            id,
            span: Parent::map(<I::Item as Task>::NAME, id),
        }
    }

    /// Makes and sends batches while the window has room and inputs are left. Each
    /// batch, once an input is known to be left for it, takes an in-flight place from
    /// `admit`: `Pending` (no place yet, for
    /// a map polled as a stream) stops the filling until the next call, and is what
    /// `fill` returns then; `Ready` when it stopped for want of room or input.
    fn fill(&mut self, admit: &mut dyn FnMut() -> Poll<Result<(), SubmitErrorKind>>) -> Poll<()> {
        while !self.exhausted {
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
                return Poll::Ready(());
            }
            if self.inputs.peek().is_none() {
                self.exhausted = true;
                return Poll::Ready(());
            }
            let admitted = ready!(admit());
            self.send_batch(size, admitted);
        }
        Poll::Ready(())
    }

    /// Pulls up to `size` inputs into one batch and sends it, under the in-flight
    /// place it was `admitted` to, or fails them with the reason it was not. The
    /// batch's frame carries the descriptors of all its tasks' shared buffers, each
    /// memory once: it ends before a task whose buffers would take it past
    /// [`MAX_FRAME_FDS`], which stays in the input for the next batch.
    // Once per batch, so out of line: the per-task path of the iterators' `next` (and
    // `Cursor::next`, hinted `#[inline]`) then stays small enough to inline into the
    // caller's loop.
    #[inline(never)]
    fn send_batch(&mut self, size: usize, admitted: Result<(), SubmitErrorKind>) {
        // The ticket holds the place from here: dropped without an outcome (no input
        // left, say), it gives it back.
        let ticket = admitted.map(|()| self.pool.admitted());
        let first = self.pulled;
        let mut items = Vec::new();
        let mut fds = Outgoing::new(MAX_FRAME_FDS);
        let mut count = 0;
        while count < size && items.len() < MAX_BATCH_BYTES {
            let Some(task) = self.inputs.peek() else {
                self.exhausted = true;
                break;
            };
            let shares = &mut self.shares;
            let encoded =
                batch::push_item(&mut items, |buf| encode_input(task, buf, &mut fds, shares));
            if encoded.is_err() && fds.is_full() && count > 0 {
                // No room left in the frame for its shared buffers: it starts the next
                // batch.
                break;
            }
            self.inputs.next();
            self.pulled += 1;
            if let Err(message) = encoded {
                // This input cannot go; the batch ends before it and it fails alone.
                let error = TaskError::Codec {
                    side: Side::Parent,
                    direction: Direction::ToWorker,
                    message,
                };
                self.submit(ticket, items, fds, count, first);
                self.deliver_here(first + count, 1, error);
                return;
            }
            count += 1;
        }
        self.submit(ticket, items, fds, count, first);
    }

    fn submit(
        &mut self,
        ticket: Result<Arc<Ticket>, SubmitErrorKind>,
        items: Vec<u8>,
        fds: Outgoing,
        count: usize,
        first: usize,
    ) {
        if count == 0 {
            return;
        }
        let types = match &self.types {
            Ok(types) => *types,
            Err(error) => {
                let error = error.clone();
                return self.deliver_here(first, count, error);
            }
        };
        let ticket = match ticket {
            Ok(ticket) => ticket,
            Err(kind) => return self.deliver_here(first, count, SubmitError::new((), kind).into()),
        };
        self.sizer.observe_bytes(items.len(), count);
        let batch = Batch::new(
            <I::Item as Task>::NAME,
            types,
            items,
            count,
            first,
            self.outbox.clone(),
        )
        .of_map(self.id)
        .with_fds(fds);
        let sent = self.pool.enqueue_batch(
            ticket.clone(),
            batch,
            TaskTypes::of::<I::Item>(),
            self.options,
            self.span.clone(),
        );
        match sent {
            Ok(()) => {
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
    /// refuses work). They count in the window as a batch until they are received, as
    /// a batch sent does: a pool that refuses every input must not have the whole input
    /// pulled at once (an endless one, forever).
    fn deliver_here(&mut self, index: usize, count: usize, error: TaskError) {
        self.ledger.sent(index, count);
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
        self.outbox.send(Delivery {
            index,
            segment,
            timing: None,
        });
    }

    /// How many outcomes are still to come, as `Iterator::size_hint` says it: one per
    /// input pulled and not yet handed out, and one per input left.
    fn remaining(&self) -> (usize, Option<usize>) {
        let owed = self.pulled - self.yielded;
        if self.exhausted {
            return (owed, Some(owed));
        }
        let (low, high) = self.inputs.size_hint();
        (
            low.saturating_add(owed),
            high.and_then(|high| high.checked_add(owed)),
        )
    }

    /// Whether every input pulled has its outcome received.
    fn all_received(&self) -> bool {
        self.received == self.pulled
    }

    /// Whether every input has been pulled and its outcome handed out.
    #[cfg(feature = "async")]
    fn is_over(&self) -> bool {
        self.exhausted && self.yielded == self.pulled
    }

    /// The next delivery in completion order; `None` when every input has its outcome.
    /// Blocks the thread for the delivery, and for an in-flight place only when the map
    /// has nothing out: with batches out, a pool at its in-flight limit ends the
    /// filling, and the map waits for what it has out (whose outcomes free places), so
    /// that an outcome in hand reaches the caller at once.
    fn next_delivery(&mut self) -> Option<Delivery> {
        let gate = self.pool.gate();
        let mut block = self.all_received();
        let _ = self.fill(&mut || {
            let admitted = gate.acquire(block);
            block = false;
            match admitted {
                Err(SubmitErrorKind::Full) => Poll::Pending,
                admitted => Poll::Ready(admitted),
            }
        });
        // With nothing out the filling sent a batch, or found the input over.
        if self.all_received() {
            return None;
        }
        let delivery = self.mailbox.recv();
        Some(self.count_in(delivery))
    }

    /// Like [`next_delivery`](Self::next_delivery), without blocking the thread: for
    /// an in-flight place the map queues at the gate, for the delivery it leaves
    /// `waker` in the mailbox, and `Pending` returns.
    ///
    /// The map keeps its turn in the gate's queue only while it returns `Pending`. Once
    /// it has something to give, or stops for want of room in its window or of input,
    /// the turn is dropped: the map holds no place in the queue, nor a wake-up for a
    /// freed place, while its owner may not poll it (busy with the outcome, or
    /// awaiting something else), which could leave a submit waiting behind it for a
    /// place that is free.
    #[cfg(feature = "async")]
    fn poll_delivery(&mut self, waker: &Waker) -> Poll<Option<Delivery>> {
        let gate = self.pool.gate();
        let mut turn = self.turn.take().unwrap_or_else(|| Turn::new(gate));
        let waiting = self.fill(&mut || turn.poll(waker)).is_pending();
        if self.all_received() {
            if self.exhausted {
                return Poll::Ready(None);
            }
            // Nothing out and inputs left: filling stopped at the gate, the pool's
            // places all taken by others.
            debug_assert!(waiting, "a map with nothing out has room in its window");
            self.turn = Some(turn);
            return Poll::Pending;
        }
        match self.mailbox.poll_recv(waker) {
            Poll::Ready(delivery) => Poll::Ready(Some(self.count_in(delivery))),
            Poll::Pending => {
                if waiting {
                    self.turn = Some(turn);
                }
                Poll::Pending
            }
        }
    }

    /// Gives up the turn a poll left in the gate's queue: a map iterated from here on
    /// blocks for its places, and a turn nobody polls would take the wake-ups of those
    /// behind it.
    #[cfg(feature = "async")]
    fn leave_gate(&mut self) {
        self.turn = None;
    }

    /// Books a delivery received.
    fn count_in(&mut self, delivery: Delivery) -> Delivery {
        self.received += delivery.segment.len();
        self.ledger.received(delivery.index, delivery.segment.len());
        if let Some((nanos, tasks)) = delivery.timing {
            self.sizer.observe(nanos, tasks);
        }
        delivery
    }
}

impl<I: Iterator> Drop for Feed<'_, I> {
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
    reading: Reading,
}

/// What is left to read of a delivery: records from `at` on, or one error for all.
/// (Not the public `Outcomes`, which counts outcomes by kind.)
#[derive(Debug)]
enum Reading {
    Records { records: Vec<u8>, at: usize },
    Failed(TaskError),
}

impl Cursor {
    fn new(delivery: Delivery) -> Cursor {
        let left = delivery.segment.len();
        let reading = match delivery.segment {
            Segment::Records { records, .. } => Reading::Records { records, at: 0 },
            Segment::Failed { error, .. } => Reading::Failed(error),
        };
        Cursor {
            index: delivery.index,
            left,
            reading,
        }
    }

    /// The next outcome, of a task of `types`; an output that does not decode is
    /// counted in `telemetry` as the caller gets it, a codec error.
    #[inline]
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
        let outcome = match &mut self.reading {
            Reading::Failed(error) => Err(error.clone()),
            Reading::Records { records, at } => {
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
///
/// With the feature `async`, `into_stream` makes it a `futures_core::Stream` of the same
/// outcomes, awaited without blocking the executor's thread (see the crate docs,
/// "Async").
#[must_use = "a map is lazy: it pulls no input and runs nothing until it is iterated"]
pub struct Map<'p, I: Iterator>
where
    I::Item: Task,
{
    feed: Feed<'p, I>,
    /// Deliveries that came before their turn, by the index of their first task (and
    /// the next one in turn, for a moment).
    ready: HashMap<usize, Delivery>,
    current: Option<Cursor>,
    _output: PhantomData<fn() -> <I::Item as Task>::Output>,
}

/// What [`Map`] yields.
type MapItem<I> = Result<<<I as Iterator>::Item as Task>::Output, TaskError>;
/// What [`MapUnordered`] yields.
type UnorderedItem<I> = (usize, MapItem<I>);

impl<'p, I> Map<'p, I>
where
    I: Iterator,
    I::Item: Task,
{
    pub(crate) fn new(pool: &'p Pool, inputs: I, options: JobOptions) -> Self {
        Map {
            feed: Feed::new(pool, inputs, options),
            ready: HashMap::new(),
            current: None,
            _output: PhantomData,
        }
    }

    /// The next outcome, with deliveries from `next_delivery`: `Pending` only when it
    /// is.
    fn advance(
        &mut self,
        mut next_delivery: impl FnMut(&mut Feed<'p, I>) -> Poll<Option<Delivery>>,
    ) -> Poll<Option<MapItem<I>>> {
        loop {
            if let Some(cursor) = &mut self.current {
                let telemetry = self.feed.pool.telemetry();
                if let Some((_, outcome)) = cursor.next(TaskTypes::of::<I::Item>(), telemetry) {
                    self.feed.yielded += 1;
                    return Poll::Ready(Some(outcome));
                }
                self.current = None;
            }
            // Deliveries tile the inputs, so the next one in order starts exactly here.
            if let Some(delivery) = self.ready.remove(&self.feed.yielded) {
                self.feed.held_bytes -= window::held_cost(&delivery);
                self.current = Some(Cursor::new(delivery));
                continue;
            }
            // The window counts what `ready` holds against a budget of its own: the
            // outcomes behind a slow task wait here while the other workers go on.
            let Some(delivery) = ready!(next_delivery(&mut self.feed)) else {
                return Poll::Ready(None);
            };
            self.feed.held_bytes += window::held_cost(&delivery);
            self.ready.insert(delivery.index, delivery);
        }
    }

    /// The pool the map runs in.
    #[cfg(feature = "progress")]
    pub(super) fn pool(&self) -> &'p Pool {
        self.feed.pool
    }

    /// The next outcome without blocking the thread (see `Feed::poll_delivery`).
    #[cfg(feature = "async")]
    pub(super) fn poll_outcome(&mut self, waker: &Waker) -> Poll<Option<MapItem<I>>> {
        self.advance(|feed| feed.poll_delivery(waker))
    }

    /// Whether every outcome has been handed out.
    #[cfg(feature = "async")]
    pub(super) fn is_over(&self) -> bool {
        self.feed.is_over()
    }

    /// Gives up a turn a poll left in the gate's queue (see `Feed::leave_gate`).
    #[cfg(feature = "async")]
    pub(super) fn leave_gate(&mut self) {
        self.feed.leave_gate();
    }
}

impl<I> Iterator for Map<'_, I>
where
    I: Iterator,
    I::Item: Task,
{
    type Item = MapItem<I>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        blocking(self.advance(|feed| Poll::Ready(feed.next_delivery())))
    }

    /// Exact when the inputs' own hint is: one outcome per input.
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.feed.remaining()
    }
}

/// Outcomes of [`Pool::map_unordered`]: `(input index, outcome)` as tasks finish.
///
/// With the feature `async`, `into_stream` makes it a `futures_core::Stream` of the same
/// outcomes, awaited without blocking the executor's thread (see the crate docs,
/// "Async").
#[must_use = "a map is lazy: it pulls no input and runs nothing until it is iterated"]
pub struct MapUnordered<'p, I: Iterator>
where
    I::Item: Task,
{
    feed: Feed<'p, I>,
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
            feed: Feed::new(pool, inputs, options),
            current: None,
            _output: PhantomData,
        }
    }

    /// The next outcome, with deliveries from `next_delivery`: `Pending` only when it
    /// is.
    fn advance(
        &mut self,
        mut next_delivery: impl FnMut(&mut Feed<'p, I>) -> Poll<Option<Delivery>>,
    ) -> Poll<Option<UnorderedItem<I>>> {
        loop {
            if let Some(cursor) = &mut self.current {
                let telemetry = self.feed.pool.telemetry();
                if let Some(item) = cursor.next(TaskTypes::of::<I::Item>(), telemetry) {
                    self.feed.yielded += 1;
                    return Poll::Ready(Some(item));
                }
            }
            let Some(delivery) = ready!(next_delivery(&mut self.feed)) else {
                return Poll::Ready(None);
            };
            self.current = Some(Cursor::new(delivery));
        }
    }

    /// The pool the map runs in.
    #[cfg(feature = "progress")]
    pub(super) fn pool(&self) -> &'p Pool {
        self.feed.pool
    }

    /// The next outcome without blocking the thread (see `Feed::poll_delivery`).
    #[cfg(feature = "async")]
    pub(super) fn poll_outcome(&mut self, waker: &Waker) -> Poll<Option<UnorderedItem<I>>> {
        self.advance(|feed| feed.poll_delivery(waker))
    }

    /// Whether every outcome has been handed out.
    #[cfg(feature = "async")]
    pub(super) fn is_over(&self) -> bool {
        self.feed.is_over()
    }

    /// Gives up a turn a poll left in the gate's queue (see `Feed::leave_gate`).
    #[cfg(feature = "async")]
    pub(super) fn leave_gate(&mut self) {
        self.feed.leave_gate();
    }
}

impl<I> Iterator for MapUnordered<'_, I>
where
    I: Iterator,
    I::Item: Task,
{
    type Item = UnorderedItem<I>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        blocking(self.advance(|feed| Poll::Ready(feed.next_delivery())))
    }

    /// Exact when the inputs' own hint is: one outcome per input.
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.feed.remaining()
    }
}

/// The outcome of an `advance` whose deliveries came from the blocking feed.
fn blocking<T>(step: Poll<T>) -> T {
    match step {
        Poll::Ready(item) => item,
        Poll::Pending => unreachable!("a feed that blocks for its deliveries is never pending"),
    }
}

impl<I: Iterator> fmt::Debug for Map<'_, I>
where
    I::Item: Task,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("pulled", &self.feed.pulled)
            .field("yielded", &self.feed.yielded)
            .finish_non_exhaustive()
    }
}

impl<I: Iterator> fmt::Debug for MapUnordered<'_, I>
where
    I::Item: Task,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapUnordered")
            .field("pulled", &self.feed.pulled)
            .field("yielded", &self.feed.yielded)
            .finish_non_exhaustive()
    }
}
