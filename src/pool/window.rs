//! A map's window: how much of its input a map may have out at once, counted in what
//! is really out (batches sent whose outcomes are not all in, and outcomes held back for
//! order), and the ledger of the batches in flight that it counts.
//!
//! The window is counted in batches, not in tasks at the current size estimate: batch
//! sizes change as the map learns how long tasks take, and batches cut at an earlier,
//! larger size must not fill a window reckoned at a smaller one. A batch stuck behind a
//! hung task then holds one place of the window, not all of it, and the other workers
//! keep busy on the inputs after it.

use std::collections::BTreeMap;

use super::mailbox::{Delivery, Segment};

/// Batches in flight per worker: one running, one waiting at the worker, and more
/// queued so that no worker waits for the caller to decode outcomes.
pub(crate) const BATCHES_PER_WORKER: usize = 4;
/// Tasks in flight per worker however small the batches (while their inputs stay within
/// the bytes of the batches): slow tasks come one per batch, and a few batches of one
/// task would leave workers waiting on the round trip to the map.
pub(crate) const MIN_WINDOW_PER_WORKER: usize = 32;
/// Bytes of outcomes the ordered `map` may hold per worker while they wait for an
/// earlier one (a slow or hung task, until its timeout), before it stops pulling.
///
/// An order-preserving map must buffer what finishes behind a slow task, or the workers
/// that finished it sit idle until the slow one ends (head-of-line blocking).
/// `conduit-concurrent-map`, for one, gives each worker a fixed number of output slots
/// and advises making it the ratio of the slowest task's time to the usual one: that
/// many outcomes per worker keep it busy for as long as the slow task runs. Here the
/// ratio is unknown in advance (a hang lasts until its timeout) and outcome sizes vary
/// from bytes to megabytes, so the budget is set in what it costs, bytes of memory,
/// and per worker, since that is how fast it fills. 16 MiB per worker holds about a
/// million small outcomes per worker: tasks of 10 µs keep the other workers busy for
/// 10 s behind a hang, tasks of a millisecond for far longer; tiny tasks of a
/// microsecond for about a second, after which the map waits with bounded memory.
/// Beside it, the inputs in flight are at most `BATCHES_PER_WORKER` batches of
/// `MAX_BATCH_BYTES` (1 MiB) per worker.
pub(crate) const HELD_BYTES_PER_WORKER: usize = 16 << 20;

/// What a map has out when it decides whether to send another batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Load {
    /// Batches sent with outcomes still to come, each counted until its last outcome
    /// is received, however few of its tasks are left.
    pub(crate) batches: usize,
    /// Tasks pulled whose outcomes have not been received.
    pub(crate) tasks: usize,
    /// What the outcomes received and held back for order cost (see [`held_cost`]):
    /// only the ordered `map` holds any.
    pub(crate) held_bytes: usize,
}

/// How much a map may have out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Batches in flight.
    pub(crate) batches: usize,
    /// Tasks in flight allowed however many batches that makes.
    pub(crate) floor: usize,
    /// The cost of outcomes held back for order.
    pub(crate) held_bytes: usize,
}

/// Whether a map with `load` out may send a batch of `size` more tasks: while fewer
/// than `limits.batches` batches are in flight, or the tasks in flight stay within the
/// floor; never while the outcomes held back for order are over their budget.
///
/// No stall comes of refusing: the ordered map refuses only on held outcomes, which
/// wait for an earlier task that is in flight, and yielding it frees the budget.
pub(crate) fn may_send(load: Load, size: usize, limits: Limits) -> bool {
    if load.held_bytes >= limits.held_bytes {
        return false;
    }
    load.batches < limits.batches || load.tasks + size <= limits.floor
}

/// What a delivery held back for order costs: its records as allocated, and the
/// delivery itself (a map of one-task deliveries holds mostly those).
pub(crate) fn held_cost(delivery: &Delivery) -> usize {
    let records = match &delivery.segment {
        Segment::Records { records, .. } => records.capacity(),
        Segment::Failed { .. } => 0,
    };
    std::mem::size_of::<Delivery>() + records
}

/// The batches a map has sent whose outcomes are not all in.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// By the map index of a batch's first task: one past its last, and how many of its
    /// outcomes are still to come.
    open: BTreeMap<usize, (usize, usize)>,
}

impl Ledger {
    /// A batch of the inputs `first..first + count` went out (or failed in the map
    /// itself: their outcomes are on their way all the same).
    pub(crate) fn sent(&mut self, first: usize, count: usize) {
        if count > 0 {
            self.open.insert(first, (first + count, count));
        }
    }

    /// `count` outcomes came, of the inputs from `index` on. Deliveries never straddle
    /// batches (a batch's pieces deliver its own tasks, and inputs failed in the map
    /// itself are booked as a batch of their own); outcomes of inputs that no batch
    /// holds are not counted.
    pub(crate) fn received(&mut self, index: usize, count: usize) {
        let Some((&first, &mut (end, ref mut left))) = self.open.range_mut(..=index).next_back()
        else {
            return;
        };
        if index >= end {
            return;
        }
        *left = left.saturating_sub(count);
        if *left == 0 {
            self.open.remove(&first);
        }
    }

    /// Batches in flight.
    pub(crate) fn batches(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_WORKERS: Limits = Limits {
        batches: 2 * BATCHES_PER_WORKER,
        floor: 2 * MIN_WINDOW_PER_WORKER,
        held_bytes: 2 * HELD_BYTES_PER_WORKER,
    };

    fn load(batches: usize, tasks: usize, held_bytes: usize) -> Load {
        Load {
            batches,
            tasks,
            held_bytes,
        }
    }

    /// The stall: a hung batch and the one queued behind it were cut at about
    /// 60 tasks, the estimate has since fallen to 10. Counted in tasks at the estimate
    /// (8 × 10), the 120 stuck tasks filled the window; counted in batches they hold 2
    /// places of 8, and the free worker is fed.
    #[test]
    fn batches_stuck_behind_a_hang_leave_room_for_the_other_workers() {
        assert!(may_send(load(2, 120, 0), 10, TWO_WORKERS));
        assert!(may_send(load(7, 180, 0), 10, TWO_WORKERS));
        assert!(!may_send(load(8, 190, 0), 10, TWO_WORKERS));
    }

    #[test]
    fn small_batches_may_fill_the_floor_in_tasks() {
        // Batches of one slow task each: 64 of them for two workers.
        assert!(may_send(load(8, 8, 0), 1, TWO_WORKERS));
        assert!(may_send(load(63, 63, 0), 1, TWO_WORKERS));
        assert!(!may_send(load(64, 64, 0), 1, TWO_WORKERS));
        // The floor does not stretch to a big batch.
        assert!(!may_send(load(8, 8, 0), 100, TWO_WORKERS));
    }

    #[test]
    fn outcomes_held_for_order_stop_the_pulling_only_past_their_budget() {
        let budget = TWO_WORKERS.held_bytes;
        // Thousands of small outcomes behind a hung task are far within it.
        assert!(may_send(load(2, 100, 2_000 * 100), 1_000, TWO_WORKERS));
        assert!(may_send(load(0, 0, budget - 1), 1_000, TWO_WORKERS));
        assert!(!may_send(load(0, 0, budget), 1, TWO_WORKERS));
    }

    #[test]
    fn the_ledger_counts_a_batch_until_its_last_outcome() {
        let mut ledger = Ledger::default();
        ledger.sent(0, 100);
        ledger.sent(100, 50);
        assert_eq!(ledger.batches(), 2);
        // A partial answer, then the journal's part, then the rest from another worker.
        ledger.received(0, 30);
        ledger.received(30, 10);
        assert_eq!(ledger.batches(), 2);
        ledger.received(40, 60);
        assert_eq!(ledger.batches(), 1);
        // The hung task alone keeps the second one open.
        ledger.received(100, 10);
        ledger.received(111, 39);
        assert_eq!(ledger.batches(), 1);
        ledger.received(110, 1);
        assert_eq!(ledger.batches(), 0);
    }

    #[test]
    fn outcomes_decided_in_the_map_are_not_counted() {
        let mut ledger = Ledger::default();
        // Inputs 10..20 went out; input 20 could not be encoded and failed alone.
        ledger.sent(10, 10);
        ledger.received(20, 1);
        ledger.received(3, 1);
        assert_eq!(ledger.batches(), 1);
        ledger.sent(21, 0);
        assert_eq!(ledger.batches(), 1);
    }
}
