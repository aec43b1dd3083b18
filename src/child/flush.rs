//! When a worker sends the finished part of a batch it is still running.
//!
//! A map sizes a batch to about [`BATCH_TIME`] of work, and the worker answers it in one
//! frame at its end. When a batch runs well past that (a slow task among quick ones, or
//! tasks slower than the map's estimate), the records of its tasks that have finished
//! go to the parent in a partial answer once [`FLUSH_AFTER`] has passed since the batch
//! began or since its last answer, so they reach the caller about that long after they
//! finish, not when the batch ends.
//!
//! The worker can only send between tasks: what finished just before a task that
//! never ends stays with the worker (and its journal) until that task ends or is
//! killed.

use std::time::{Duration, Instant};

use crate::wire::batch::BATCH_TIME;

/// How long the records of finished tasks may wait in the worker while their batch
/// runs on. A batch that runs as estimated ends within it and goes in one frame: a
/// partial answer costs a frame and a wake-up of the parent, for nothing, to a batch
/// about to end. Twice the estimate leaves room for estimates that are off (they follow
/// the last batches' times) and for a worker that loses its CPU for a moment.
pub(crate) const FLUSH_AFTER: Duration = BATCH_TIME.saturating_mul(2);

/// Reading the clock after every task would add about 20 ns (far more where the clock
/// is not read in user space) to tasks that take about 100 ns in all. So the worker
/// reads it after 1, 2, 4, … tasks, doubling the stride while each stride takes less
/// than `QUICK_STRIDE`, back to every task as soon as one takes longer: quick tasks are
/// read about every 60–125 µs, a few reads in a batch of 1 ms, and slow ones after each.
const QUICK_STRIDE: Duration = Duration::from_nanos(FLUSH_AFTER.as_nanos() as u64 / 16);
/// The longest stride, in a batch's share: at least this many reads in a batch whatever
/// its tasks take, so that tasks that turn slow mid-batch are seen within a sixteenth of
/// the batch.
const READS_PER_BATCH: u32 = 16;

/// When to send what a running batch has finished.
#[derive(Debug)]
pub(crate) struct Flush {
    /// Tasks between clock reads, now.
    stride: u32,
    /// The longest stride.
    max_stride: u32,
    /// The clock is read next after this many tasks of the batch.
    next_read: u32,
    /// When it was last read.
    last_read: Instant,
    /// When the batch began, or its last answer went.
    since: Instant,
}

impl Flush {
    /// For a batch of `count` tasks starting `now`.
    pub(crate) fn new(count: u32, now: Instant) -> Flush {
        Flush {
            stride: 1,
            max_stride: (count / READS_PER_BATCH).max(1),
            next_read: 1,
            last_read: now,
            since: now,
        }
    }

    /// After `done` tasks of the batch, with records held: whether to send them now.
    /// `clock` is read only at the end of a stride.
    pub(crate) fn is_due(&mut self, done: u32, clock: impl FnOnce() -> Instant) -> bool {
        if done < self.next_read {
            return false;
        }
        let now = clock();
        self.stride = if now.saturating_duration_since(self.last_read) < QUICK_STRIDE {
            self.stride.saturating_mul(2).min(self.max_stride)
        } else {
            1
        };
        self.last_read = now;
        self.next_read = done.saturating_add(self.stride);
        now.saturating_duration_since(self.since) >= FLUSH_AFTER
    }

    /// An answer went at `now`.
    pub(crate) fn sent(&mut self, now: Instant) {
        self.since = now;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// Runs `flush` over tasks `1..=count` taking `per_task` each (by a clock that
    /// counts its reads): the tasks after which it was due, and the reads.
    fn run(flush: &mut Flush, count: u32, per_task: Duration) -> (Vec<u32>, u32) {
        let start = flush.since;
        let reads = Cell::new(0);
        let mut due = Vec::new();
        for done in 1..=count {
            let clock = || {
                reads.set(reads.get() + 1);
                start + per_task * done
            };
            if flush.is_due(done, clock) {
                due.push(done);
                flush.sent(start + per_task * done);
            }
        }
        (due, reads.get())
    }

    #[test]
    fn a_batch_that_runs_as_estimated_reads_the_clock_a_few_times_and_goes_whole() {
        // 10,000 tasks of 100 ns: a batch of 1 ms.
        let mut flush = Flush::new(10_000, Instant::now());
        let (due, reads) = run(&mut flush, 10_000, Duration::from_nanos(100));
        assert_eq!(due, Vec::<u32>::new());
        assert!((16..=40).contains(&reads), "{reads} reads");
    }

    #[test]
    fn slow_tasks_are_read_after_each_and_sent_every_flush_after() {
        // Estimated at 100 tasks in 1 ms, they take 1 ms each.
        let mut flush = Flush::new(100, Instant::now());
        let (due, reads) = run(&mut flush, 20, Duration::from_millis(1));
        assert_eq!(reads, 20);
        assert_eq!(due, [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]);
    }

    #[test]
    fn tasks_that_turn_slow_mid_batch_are_seen_within_a_sixteenth_of_it() {
        let mut flush = Flush::new(1_600, Instant::now());
        let (due, _) = run(&mut flush, 800, Duration::from_nanos(100));
        assert!(due.is_empty());
        // From task 801 on, each takes 1 ms: read again by task 900 at the latest.
        let start = flush.since;
        let at = |done: u32| {
            start + Duration::from_nanos(80_000) + Duration::from_millis(u64::from(done - 800))
        };
        let first = (801..=1_600).find(|&done| flush.is_due(done, || at(done)));
        assert!(first.is_some_and(|done| done <= 900), "{first:?}");
    }
}
