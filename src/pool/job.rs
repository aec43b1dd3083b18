//! A queued job (one task, or a batch of a map's tasks) and its ticket: where each
//! task's outcome is decided, exactly once.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
#[cfg(feature = "async")]
use std::task::Poll;
use std::task::Waker;
use std::time::Duration;

use super::gate::Gate;
use super::mailbox::{Delivery, Outbox, Segment};
use super::telemetry::Origin;
use super::trace::JobTrace;
use super::wakeup::Wakeup;
use crate::error::TaskError;
use crate::slot::event::{TaskId, TaskRange};
use crate::task::TaskTypes;
use crate::wire::batch;
use crate::wire::fds::Outgoing;
use crate::wire::frame::{self, Request};

/// The raw outcome of a task: its encoded output, or why there is none.
pub(crate) type RawOutcome = Result<Encoded, TaskError>;

/// An encoded value and the descriptors of the shared buffers it holds.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

/// What a job carries of the settings that govern its run: the slots read these, not
/// the pool's configuration, so that each job may have its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JobOptions {
    /// Longest a task may run (see `PoolBuilder::timeout`).
    pub(crate) timeout: Option<Duration>,
    /// Reruns allowed after a crash of its worker (see `PoolBuilder::retries`).
    pub(crate) retries: u32,
}

/// Work on its way to a worker, and the ticket that holds its place in the pool.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) id: u64,
    /// Runs that were lost with their worker so far (see `PoolBuilder::retries`).
    pub(crate) attempts: u32,
    pub(crate) options: JobOptions,
    pub(crate) ticket: Arc<Ticket>,
    pub(crate) work: Work,
    /// The task's concrete types, for the message of a worker that has others.
    pub(crate) types: TaskTypes,
    /// The task's `Task::NAME` (a batch's tasks are all of one type), for events and
    /// the prefix of the lines its worker writes.
    pub(crate) name: &'static str,
    /// Its spans, with the `tracing` feature.
    pub(crate) trace: JobTrace,
}

#[derive(Debug)]
pub(crate) enum Work {
    /// One submitted task: its ready-to-send `Run` frame, and the descriptors that go
    /// with it (each time it is sent).
    One(Encoded),
    /// Consecutive inputs of a map, run one after the other by one worker.
    Batch(Batch),
}

/// The tasks of a batch that have no outcome yet: they are always the last `count`
/// entries of `items`, starting at `start`.
#[derive(Debug)]
pub(crate) struct Batch {
    task: &'static str,
    /// The fingerprint of the task's types (see `TaskTypes`).
    types: u64,
    items: Vec<u8>,
    /// The descriptors of all its tasks' shared buffers, which their entries name by
    /// index: every piece of the batch sends the whole table, so the entries stand as
    /// they were encoded.
    fds: Arc<Outgoing>,
    start: usize,
    count: usize,
    /// The map index of the first of them.
    first: usize,
    /// The number of the map that made the batch, for events.
    map: u64,
    /// Where the map that made the batch takes its outcomes.
    out: Outbox,
    /// The `Batch` request header for these tasks, under the job's id.
    header: Vec<u8>,
    id: u64,
    /// Pieces of the batch that `split_front` made and that still owe outcomes,
    /// shared by all of them: the ticket is settled when the last piece is done, so
    /// it holds its in-flight place and can be cancelled until then.
    pieces: Arc<AtomicUsize>,
}

impl Job {
    /// The frame to send, in two parts.
    pub(crate) fn frame(&self) -> [&[u8]; 2] {
        match &self.work {
            Work::One(frame) => [&frame.bytes, &[]],
            Work::Batch(batch) => [&batch.items[batch.start..], &batch.header],
        }
    }

    /// How many tasks the job holds that have no outcome yet.
    pub(crate) fn tasks(&self) -> usize {
        match &self.work {
            Work::One(_) => 1,
            Work::Batch(batch) => batch.count,
        }
    }

    /// The tasks the job holds that have no outcome yet.
    pub(crate) fn range(&self) -> TaskRange {
        match &self.work {
            Work::One(_) => TaskRange {
                name: self.name,
                first: TaskId::Submitted(self.id),
                count: 1,
            },
            Work::Batch(batch) => batch.range(),
        }
    }

    /// The descriptors that go with the frame.
    pub(crate) fn fds(&self) -> Vec<BorrowedFd<'_>> {
        match &self.work {
            Work::One(frame) => frame.fds.iter().map(AsFd::as_fd).collect(),
            Work::Batch(batch) => batch.fds.fds(),
        }
    }

    /// How many descriptors go with the frame.
    pub(crate) fn fd_count(&self) -> usize {
        match &self.work {
            Work::One(frame) => frame.fds.len(),
            Work::Batch(batch) => batch.fds.len(),
        }
    }

    pub(crate) fn is_batch(&self) -> bool {
        matches!(self.work, Work::Batch(_))
    }

    pub(crate) fn batch_mut(&mut self) -> Option<&mut Batch> {
        match &mut self.work {
            Work::One(_) => None,
            Work::Batch(batch) => Some(batch),
        }
    }

    /// Records the outcome of a single task. Its frame, and the descriptors that went
    /// with it, are dropped first: a caller woken by the outcome finds them closed.
    pub(crate) fn complete(self, outcome: RawOutcome) {
        let Job { ticket, work, .. } = self;
        drop(work);
        ticket.complete(outcome);
    }

    /// Gives every task of the job that has no outcome yet the outcome `error`.
    pub(crate) fn fail(mut self, error: TaskError) {
        match &mut self.work {
            Work::One(_) => self.complete(Err(error)),
            Work::Batch(batch) => {
                let count = batch.count;
                if count > 0 {
                    batch.deliver(Segment::Failed { count, error }, None);
                }
                self.finish();
            }
        }
    }

    /// A batch piece whose tasks all have their outcomes: the last piece of its batch
    /// settles the ticket.
    pub(crate) fn finish(self) {
        if let Work::Batch(batch) = &self.work {
            if batch.pieces.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.ticket.complete(Ok(Encoded::default()));
            }
        }
    }

    /// Splits off the first `n` tasks of a batch (0 < n < tasks) as a job of their own,
    /// under the new id `id`, sharing this one's ticket. `None` for a single task, or
    /// if the entries cannot be read (they were written by this process, so they can).
    pub(crate) fn split_front(&mut self, n: usize, id: u64) -> Option<Job> {
        let Work::Batch(batch) = &mut self.work else {
            return None;
        };
        let len = batch::prefix_len(&batch.items[batch.start..], n)?;
        let front = batch.items[batch.start..batch.start + len].to_vec();
        let out = batch.out.clone();
        let mut front = Batch::new(batch.task, batch.types, front, n, batch.first, out);
        front.map = batch.map;
        front.fds = batch.fds.clone();
        batch.pieces.fetch_add(1, Ordering::AcqRel);
        front.pieces = batch.pieces.clone();
        front.reheader(id);
        batch.start += len;
        batch.count -= n;
        batch.first += n;
        batch.reheader(batch.id);
        Some(Job {
            id,
            attempts: self.attempts,
            options: self.options,
            ticket: self.ticket.clone(),
            work: Work::Batch(front),
            types: self.types,
            name: self.name,
            trace: self.trace.piece(),
        })
    }
}

impl Job {
    /// A batch goes by the id `id` from now on. (A single task's frame is encoded once,
    /// its id inside; it keeps it.)
    pub(crate) fn renumber(&mut self, id: u64) {
        if let Work::Batch(batch) = &mut self.work {
            self.id = id;
            batch.reheader(id);
        }
    }

    /// Splits off the tasks of a batch after its first `keep` (0 < keep < tasks) as a
    /// job of their own, under the new id `id`, sharing this one's ticket; this job
    /// keeps its id. `None` for a single task, or if the entries cannot be read.
    pub(crate) fn split_back(&mut self, keep: usize, id: u64) -> Option<Job> {
        let front = self.split_front(keep, self.id)?;
        let mut back = std::mem::replace(self, front);
        back.renumber(id);
        Some(back)
    }
}

impl Batch {
    /// A batch of the `count` entries in `items`, the first being map input `first`,
    /// of the task `task` whose types have the fingerprint `types`, with no shared
    /// buffers (see [`with_fds`](Batch::with_fds)). Its header is made by
    /// [`reheader`](Batch::reheader).
    pub(crate) fn new(
        task: &'static str,
        types: u64,
        items: Vec<u8>,
        count: usize,
        first: usize,
        out: Outbox,
    ) -> Batch {
        Batch {
            task,
            types,
            items,
            fds: Arc::new(Outgoing::new(0)),
            start: 0,
            count,
            first,
            map: 0,
            out,
            header: Vec::new(),
            id: 0,
            pieces: Arc::new(AtomicUsize::new(1)),
        }
    }

    /// The batch, its entries naming the descriptors in `fds`.
    pub(crate) fn with_fds(mut self, fds: Outgoing) -> Batch {
        self.fds = Arc::new(fds);
        self
    }

    /// Tasks left without an outcome.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// The batch comes from the map numbered `map`.
    pub(crate) fn of_map(mut self, map: u64) -> Batch {
        self.map = map;
        self
    }

    /// The tasks left without an outcome.
    pub(crate) fn range(&self) -> TaskRange {
        TaskRange {
            name: self.task,
            first: TaskId::Mapped {
                map: self.map,
                index: self.first,
            },
            count: self.count,
        }
    }

    /// Makes the request header for the tasks left, under id `id`.
    pub(crate) fn reheader(&mut self, id: u64) {
        let count = u32::try_from(self.count).expect("a batch holds under 4 G tasks");
        self.id = id;
        self.header = frame::header_only(&Request::Batch {
            id,
            task: self.task.to_owned(),
            types: self.types,
            count,
            fds: self.fds.len() as u32,
        });
    }

    /// Hands the outcomes of the next `segment.len()` tasks to the map; they leave the
    /// batch.
    pub(crate) fn deliver(&mut self, segment: Segment, timing: Option<(u64, usize)>) {
        let n = segment.len().min(self.count);
        let len = batch::prefix_len(&self.items[self.start..], n)
            .expect("a batch's own entries are readable");
        let index = self.first;
        self.start += len;
        self.count -= n;
        self.first += n;
        self.reheader(self.id);
        self.out.send(Delivery {
            index,
            segment,
            timing,
        });
    }
}

#[derive(Debug)]
enum State {
    Queued,
    Running,
    CancelRequested,
    /// `None` once the outcome was taken by the handle.
    Done(Option<RawOutcome>),
}

/// The shared state of one submitted task, or of one batch of a map (whose outcomes
/// go to the map as [`Delivery`]s; the ticket then only says when the batch is over).
#[derive(Debug)]
pub(crate) struct Ticket {
    state: Mutex<State>,
    done: Condvar,
    /// Woken once when the outcome is recorded: a future waiting on the task, say. Only
    /// set while `state`'s lock is held, so no outcome slips past a new waker.
    waker: Wakeup,
    gate: Option<Arc<Gate>>,
    /// Where an outcome the ticket settles on its own is counted and told.
    /// Set once, before the job is queued (a map's ticket takes its place before the
    /// batch's tasks are known).
    origin: OnceLock<Origin>,
}

impl Ticket {
    pub(crate) fn new(gate: Option<Arc<Gate>>) -> Ticket {
        Ticket {
            state: Mutex::new(State::Queued),
            done: Condvar::new(),
            waker: Wakeup::default(),
            gate,
            origin: OnceLock::new(),
        }
    }

    /// Makes the ticket stand for the tasks of `origin`: when it settles on its own
    /// (cancelled while queued), they are counted and told there.
    pub(crate) fn report_to(&self, origin: Origin) {
        let set = self.origin.set(origin);
        debug_assert!(set.is_ok(), "a ticket reports to one origin");
    }

    /// The first of the tasks the ticket stands for, if it reports anywhere.
    pub(crate) fn first_task(&self) -> Option<TaskId> {
        self.origin.get().map(|origin| origin.tasks.first)
    }

    /// The task's output was counted `ok`, and its caller could not decode it.
    pub(crate) fn undecodable(&self) {
        if let Some(origin) = self.origin.get() {
            origin.telemetry.undecodable();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the task as running; `false` if it already has an outcome (cancelled).
    pub(crate) fn start(&self) -> bool {
        let mut state = self.lock();
        match *state {
            State::Queued => {
                *state = State::Running;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn is_cancel_requested(&self) -> bool {
        matches!(*self.lock(), State::CancelRequested)
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(*self.lock(), State::Done(_))
    }

    /// Records the outcome. Only the first call counts; it returns whether it did.
    pub(crate) fn complete(&self, outcome: RawOutcome) -> bool {
        self.settle(self.lock(), outcome)
    }

    /// Records the outcome while holding the lock that decided it, so no other party
    /// (a supervisor starting the job, a second cancel) can slip in between.
    fn settle(&self, mut state: MutexGuard<'_, State>, outcome: RawOutcome) -> bool {
        if matches!(*state, State::Done(_)) {
            return false;
        }
        *state = State::Done(Some(outcome));
        // The place is free before anyone learns of the outcome, so a caller woken by
        // it can submit again at once.
        if let Some(gate) = &self.gate {
            gate.release();
        }
        drop(state);
        self.done.notify_all();
        self.waker.wake();
        true
    }

    /// Whether the outcome is in; if not, `waker` is woken once it is (replacing the
    /// waker of an earlier call). The way for something other than a thread blocked on
    /// this one ticket to wait for the task: `completion` watches several tickets at
    /// once with it, and a handle's future polls with `poll_outcome`.
    pub(crate) fn is_done_or_wake(&self, waker: &Waker) -> bool {
        self.done_or_wake(waker).is_some()
    }

    /// Takes the outcome if it is in; if not, `waker` is woken once it is (replacing
    /// the waker of an earlier call, so a future polled with a new waker is woken
    /// through that one).
    #[cfg(feature = "async")]
    pub(crate) fn poll_outcome(&self, waker: &Waker) -> Poll<RawOutcome> {
        match self.done_or_wake(waker) {
            Some(mut state) => Poll::Ready(take(&mut state)),
            None => Poll::Pending,
        }
    }

    /// The state, locked, if the outcome is in; otherwise leaves `waker` (under the
    /// state's lock, so the outcome cannot be recorded in between unseen).
    fn done_or_wake(&self, waker: &Waker) -> Option<MutexGuard<'_, State>> {
        let state = self.lock();
        if matches!(*state, State::Done(_)) {
            return Some(state);
        }
        self.waker.set(waker);
        None
    }

    /// Cancels the task: at once if still queued, by killing its worker if running.
    /// Returns `false` when the task already had an outcome.
    pub(crate) fn cancel(&self) -> bool {
        let mut state = self.lock();
        match *state {
            State::Queued => {
                let cancelled = TaskError::Cancelled;
                // Counted before anyone can learn of the outcome, told after (no
                // listener runs under the lock).
                if let Some(Origin { telemetry, tasks }) = self.origin.get() {
                    telemetry.count_here(*tasks, &cancelled);
                }
                let settled = self.settle(state, Err(cancelled.clone()));
                if let Some(Origin { telemetry, tasks }) = self.origin.get() {
                    telemetry.tell_here(*tasks, &cancelled);
                }
                settled
            }
            State::Running => {
                *state = State::CancelRequested;
                true
            }
            State::CancelRequested => true,
            State::Done(_) => false,
        }
    }

    /// Blocks for the outcome and takes it.
    pub(crate) fn wait(&self) -> RawOutcome {
        let state = self.lock();
        let mut state = self
            .done
            .wait_while(state, |s| !matches!(s, State::Done(_)))
            .unwrap_or_else(|e| e.into_inner());
        take(&mut state)
    }

    /// Waits up to `timeout`; takes the outcome if it came.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> Option<RawOutcome> {
        let state = self.lock();
        let (mut state, _) = self
            .done
            .wait_timeout_while(state, timeout, |s| !matches!(s, State::Done(_)))
            .unwrap_or_else(|e| e.into_inner());
        matches!(*state, State::Done(_)).then(|| take(&mut state))
    }
}

impl Drop for Ticket {
    /// A ticket dropped without an outcome was never queued (its job refused, or the
    /// task's `Serialize` panicked in `submit`): its in-flight place is given back, so
    /// no place is ever lost with it.
    fn drop(&mut self) {
        let unsettled = !matches!(*self.lock(), State::Done(_));
        if let (true, Some(gate)) = (unsettled, &self.gate) {
            gate.release();
        }
    }
}

fn take(state: &mut State) -> RawOutcome {
    match state {
        State::Done(outcome) => outcome
            .take()
            .expect("a handle takes its outcome once (wait consumes the handle)"),
        _ => unreachable!("take is called on finished tickets only"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::wakeup::counting;

    #[test]
    fn only_the_first_outcome_counts() {
        let ticket = Ticket::new(None);
        assert!(ticket.start());
        assert!(ticket.complete(Ok(Encoded {
            bytes: vec![1],
            fds: Vec::new()
        })));
        assert!(!ticket.complete(Err(TaskError::PoolClosed)));
        assert_eq!(ticket.wait().unwrap().bytes, vec![1]);
    }

    #[test]
    fn cancel_while_queued_is_final_and_the_worker_skips_it() {
        let gate = Arc::new(Gate::new(1));
        gate.acquire(false).unwrap();
        let ticket = Ticket::new(Some(gate.clone()));
        assert!(ticket.cancel());
        assert!(!ticket.start());
        assert!(!ticket.cancel());
        assert_eq!(ticket.wait().unwrap_err(), TaskError::Cancelled);
        // The in-flight place came back.
        gate.acquire(false).unwrap();
    }

    #[test]
    fn a_ticket_dropped_without_an_outcome_gives_its_place_back() {
        let gate = Arc::new(Gate::new(1));
        gate.acquire(false).unwrap();
        drop(Ticket::new(Some(gate.clone())));
        gate.acquire(false).unwrap();
        // A settled ticket gave its place back once, when settled.
        let ticket = Ticket::new(Some(gate.clone()));
        assert!(ticket.complete(Err(TaskError::PoolClosed)));
        drop(ticket);
        gate.acquire(false).unwrap();
        assert_eq!(
            gate.acquire(false),
            Err(crate::error::SubmitErrorKind::Full)
        );
    }

    #[test]
    fn an_outcome_wakes_the_waker_waiting_for_it_once() {
        let (count, waker) = counting::waker();
        let ticket = Ticket::new(None);
        assert!(ticket.start());
        assert!(!ticket.is_done_or_wake(&waker));
        assert!(!ticket.is_done_or_wake(&waker));
        assert_eq!(count.get(), 0);
        assert!(ticket.complete(Err(TaskError::Cancelled)));
        assert_eq!(count.get(), 1);
        // Once the outcome is in, nothing more is woken and no waker is kept.
        assert!(ticket.is_done_or_wake(&waker));
        assert!(!ticket.complete(Err(TaskError::PoolClosed)));
        assert_eq!(count.get(), 1);
        // A cancel while queued is an outcome too.
        let queued = Ticket::new(None);
        assert!(!queued.is_done_or_wake(&waker));
        assert!(queued.cancel());
        assert_eq!(count.get(), 2);
    }

    #[test]
    fn cancel_while_running_asks_the_supervisor() {
        let ticket = Ticket::new(None);
        assert!(ticket.start());
        assert!(ticket.cancel());
        assert!(ticket.is_cancel_requested());
        assert!(ticket.wait_timeout(Duration::from_millis(1)).is_none());
    }
}
