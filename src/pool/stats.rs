//! [`Stats`]: a snapshot of a pool's counts, and [`Counters`], where they are kept.
//!
//! Counting is always on, so it must cost next to nothing: each slot counts in a block
//! of atomics of its own (on its own cache line; nobody else writes it), the callers'
//! threads in another, and a count is added once per job or per answer of a batch,
//! not once per task. A snapshot adds the blocks up.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::error::TaskErrorKind;
use crate::slot::event::ExitKind;

/// How many tasks a pool has, and has had, in each state; see [`Pool::stats`](crate::Pool::stats).
///
/// A snapshot: each count is read once, while tasks go on moving, so counts read
/// while tasks run may be off by those moving at that moment. Once everything
/// submitted has its outcome (every handle waited for, every map consumed), they are
/// exact: [`finished`](Stats::finished) holds one outcome per task accepted, of the
/// kind its caller got, and `queued` and `running` are 0.
///
/// ```no_run
/// # fn demo(pool: &procpool::Pool) {
/// let stats = pool.stats();
/// println!(
///     "{} queued, {} running, {} ok, {} crashed, {} workers replaced",
///     stats.queued,
///     stats.running,
///     stats.finished.ok(),
///     stats.finished.breakdowns(),
///     stats.worker_exits.lost(),
/// );
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Tasks accepted that no worker has taken up as its current work yet: waiting in
    /// the pool, sent ahead to a busy worker, or waiting to run again after their
    /// worker was lost.
    pub queued: u64,
    /// Tasks that a worker has taken up and not answered for yet: one per busy worker
    /// for submitted tasks; for a map, the rest of the batch a worker is working
    /// through (see [`Event`](crate::Event) on batches).
    pub running: u64,
    /// Tasks that have their outcome, by kind.
    pub finished: Outcomes,
    /// Reruns of tasks after their worker was lost (see
    /// [`PoolBuilder::retries`](crate::PoolBuilder::retries)).
    pub retries: u64,
    /// Worker processes started, replacements included.
    pub worker_starts: u64,
    /// Worker processes that left their slot, by cause.
    pub worker_exits: WorkerExits,
}

/// Tasks that have their outcome, by kind: part of [`Stats`].
///
/// An output that the caller cannot decode counts as `ok` until the caller decodes it,
/// and as [`Codec`](TaskErrorKind::Codec) from then on, as the caller got it.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcomes {
    ok: u64,
    errors: [u64; TaskErrorKind::ALL.len()],
}

impl Outcomes {
    /// Tasks that returned their output.
    pub fn ok(&self) -> u64 {
        self.ok
    }

    /// Tasks that ended in an error of `kind`.
    pub fn errors(&self, kind: TaskErrorKind) -> u64 {
        self.errors[kind.index()]
    }

    /// Tasks that ended in an error, of any kind.
    pub fn all_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Tasks that broke down (see [`TaskErrorKind::is_breakdown`]): panicked, their worker
    /// died or was killed for them.
    pub fn breakdowns(&self) -> u64 {
        self.nonzero_errors()
            .filter(|(kind, _)| kind.is_breakdown())
            .map(|(_, n)| n)
            .sum()
    }

    /// Every task that has its outcome.
    pub fn total(&self) -> u64 {
        self.ok + self.all_errors()
    }

    /// Counts one more task that ended in `kind` (`None`: its output).
    #[cfg(feature = "progress")]
    pub(crate) fn add(&mut self, kind: Option<TaskErrorKind>) {
        match kind {
            None => self.ok += 1,
            Some(kind) => self.errors[kind.index()] += 1,
        }
    }

    /// The error kinds with at least one task, and their counts.
    pub fn nonzero_errors(&self) -> impl Iterator<Item = (TaskErrorKind, u64)> + '_ {
        TaskErrorKind::ALL
            .iter()
            .zip(self.errors)
            .filter(|(_, n)| *n > 0)
            .map(|(kind, n)| (*kind, n))
    }
}

/// Only the kinds with a count: `{ok: 98, panicked: 1, signaled: 1}`.
impl fmt::Debug for Outcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        map.entry(&format_args!("ok"), &self.ok);
        for (kind, n) in self.nonzero_errors() {
            map.entry(&format_args!("{kind}"), &n);
        }
        map.finish()
    }
}

/// Workers that left their slot, by cause: part of [`Stats`].
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerExits {
    counts: [u64; ExitKind::COUNT],
}

impl WorkerExits {
    /// Workers that left for `kind`.
    pub fn of(&self, kind: ExitKind) -> u64 {
        self.counts[kind.index()]
    }

    /// Workers lost while they ran a task (crashed, or killed for it), whatever the
    /// task's error: the workers replaced because of a task.
    pub fn lost(&self) -> u64 {
        self.counts[..TaskErrorKind::ALL.len()].iter().sum()
    }

    /// Every worker that left.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The causes with at least one exit, and their counts.
    pub fn nonzero(&self) -> impl Iterator<Item = (ExitKind, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(index, n)| (ExitKind::at(index), *n))
    }
}

/// Only the causes with a count: `{lost_signaled: 1, pool_closed: 2}`.
impl fmt::Debug for WorkerExits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (kind, n) in self.nonzero() {
            map.entry(&format_args!("{kind}"), &n);
        }
        map.finish()
    }
}

/// Where one thread, or the callers' threads, count. Aligned to two cache lines, so
/// that no two blocks share one (adjacent-line prefetch included).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Block {
    ok: AtomicU64,
    errors: [AtomicU64; TaskErrorKind::ALL.len()],
    /// Tasks accepted (callers' block only).
    submitted: AtomicU64,
    /// Outputs that their caller could not decode, counted `ok` by a slot (callers'
    /// block only).
    undecodable: AtomicU64,
    retries: AtomicU64,
    worker_starts: AtomicU64,
    worker_exits: [AtomicU64; ExitKind::COUNT],
    /// Tasks of the job its worker runs now (slots' blocks only): a gauge, set.
    running: AtomicUsize,
}

/// A pool's counts: one [`Block`] per slot, written by that slot's thread only, and one
/// for the callers' threads.
#[derive(Debug)]
pub(crate) struct Counters {
    callers: Block,
    slots: Box<[Block]>,
}

/// Whose block a count goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    /// A caller's thread.
    Caller,
    /// Slot `n`'s thread.
    Slot(usize),
}

impl Counters {
    pub(crate) fn new(slots: usize) -> Counters {
        Counters {
            callers: Block::default(),
            slots: (0..slots).map(|_| Block::default()).collect(),
        }
    }

    fn block(&self, by: Counter) -> &Block {
        match by {
            Counter::Caller => &self.callers,
            Counter::Slot(slot) => &self.slots[slot],
        }
    }

    /// `n` tasks were accepted (or, with a negative `n`, refused after all).
    pub(crate) fn submitted(&self, n: usize) {
        add(&self.callers.submitted, n);
    }

    /// `n` tasks counted by [`submitted`](Self::submitted) were refused after all.
    pub(crate) fn unsubmitted(&self, n: usize) {
        self.callers
            .submitted
            .fetch_sub(n as u64, Ordering::Relaxed);
    }

    /// `n` tasks have the outcome `kind` (`None`: their output).
    pub(crate) fn finished(&self, by: Counter, kind: Option<TaskErrorKind>, n: usize) {
        let block = self.block(by);
        match kind {
            None => add(&block.ok, n),
            Some(kind) => add(&block.errors[kind.index()], n),
        }
    }

    /// A task counted `ok` turned out to have an output its caller cannot decode.
    pub(crate) fn undecodable(&self) {
        add(&self.callers.undecodable, 1);
    }

    pub(crate) fn retried(&self, slot: usize) {
        add(&self.slots[slot].retries, 1);
    }

    pub(crate) fn worker_started(&self, slot: usize) {
        add(&self.slots[slot].worker_starts, 1);
    }

    pub(crate) fn worker_exited(&self, slot: usize, kind: ExitKind) {
        add(&self.slots[slot].worker_exits[kind.index()], 1);
    }

    /// Slot `slot`'s worker runs `tasks` tasks now (the job it took up, less those
    /// answered for).
    pub(crate) fn running(&self, slot: usize, tasks: usize) {
        self.slots[slot].running.store(tasks, Ordering::Relaxed);
    }

    /// The counts now.
    pub(crate) fn snapshot(&self) -> Stats {
        let mut stats = Stats::default();
        let mut running = 0u64;
        // The outcomes first, then where tasks are, then what was accepted: a task that
        // moves meanwhile is seen at most once among the outcomes, and what cannot be
        // told apart shows as queued, never below zero.
        for block in self.slots.iter().chain([&self.callers]) {
            stats.finished.ok += read(&block.ok);
            for (total, n) in stats.finished.errors.iter_mut().zip(&block.errors) {
                *total += read(n);
            }
            stats.retries += read(&block.retries);
            stats.worker_starts += read(&block.worker_starts);
            let exits = stats.worker_exits.counts.iter_mut();
            for (total, n) in exits.zip(&block.worker_exits) {
                *total += read(n);
            }
        }
        let undecodable = read(&self.callers.undecodable).min(stats.finished.ok);
        stats.finished.ok -= undecodable;
        stats.finished.errors[TaskErrorKind::Codec.index()] += undecodable;
        for block in self.slots.iter() {
            running += block.running.load(Ordering::Relaxed) as u64;
        }
        let submitted = read(&self.callers.submitted);
        let outstanding = submitted.saturating_sub(stats.finished.total());
        stats.running = running.min(outstanding);
        stats.queued = outstanding - stats.running;
        stats
    }
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_adds_up_every_block() {
        let counters = Counters::new(2);
        counters.submitted(10);
        counters.finished(Counter::Slot(0), None, 4);
        counters.finished(Counter::Slot(1), None, 2);
        counters.finished(Counter::Slot(1), Some(TaskErrorKind::Signaled), 1);
        counters.finished(Counter::Caller, Some(TaskErrorKind::Cancelled), 1);
        counters.running(0, 1);
        counters.retried(1);
        counters.worker_started(0);
        counters.worker_started(1);
        counters.worker_started(1);
        counters.worker_exited(1, ExitKind::Lost(TaskErrorKind::Signaled));
        let stats = counters.snapshot();
        assert_eq!(stats.finished.ok(), 6);
        assert_eq!(stats.finished.errors(TaskErrorKind::Signaled), 1);
        assert_eq!(stats.finished.breakdowns(), 1);
        assert_eq!(stats.finished.all_errors(), 2);
        assert_eq!(stats.finished.total(), 8);
        assert_eq!((stats.queued, stats.running), (1, 1));
        assert_eq!(stats.retries, 1);
        assert_eq!(stats.worker_starts, 3);
        assert_eq!(stats.worker_exits.lost(), 1);
        assert_eq!(stats.worker_exits.total(), 1);
        assert_eq!(
            format!("{:?}", stats.finished),
            "{ok: 6, signaled: 1, cancelled: 1}"
        );
        assert_eq!(format!("{:?}", stats.worker_exits), "{lost_signaled: 1}");
    }

    #[test]
    fn an_output_its_caller_cannot_decode_moves_from_ok_to_codec() {
        let counters = Counters::new(1);
        counters.submitted(2);
        counters.finished(Counter::Slot(0), None, 2);
        counters.undecodable();
        let stats = counters.snapshot();
        assert_eq!(stats.finished.ok(), 1);
        assert_eq!(stats.finished.errors(TaskErrorKind::Codec), 1);
        assert_eq!(stats.finished.total(), 2);
    }

    #[test]
    fn gauges_never_go_below_zero_while_tasks_move() {
        let counters = Counters::new(1);
        // A slot counted an outcome before the caller counted the task accepted, and
        // still shows it running.
        counters.finished(Counter::Slot(0), None, 1);
        counters.running(0, 1);
        let stats = counters.snapshot();
        assert_eq!((stats.queued, stats.running), (0, 0));
        // Refused after all: what was counted accepted is taken back.
        counters.submitted(3);
        counters.unsubmitted(1);
        counters.running(0, 0);
        assert_eq!(counters.snapshot().queued, 1);
    }

    #[test]
    fn blocks_do_not_share_cache_lines() {
        assert!(std::mem::align_of::<Block>() >= 128);
    }
}
