//! The batch journal: a small shared-memory region per worker in which it records each
//! finished task of a batch before starting the next, so that a crash mid-batch loses
//! nothing that had finished.
//!
//! The parent makes the region and sends its descriptor (`Request::Journal`) before the
//! worker's first batch of more than one task, or its first job sent behind another.
//! The worker writes; the parent reads the progress counter while the worker runs (to
//! time each task of the batch from its own start), the records of finished tasks
//! while a long one runs (`peek`: the id and `base` read before and after the copy,
//! like a sequence lock), and all of them once the worker is dead.
//!
//! ```text
//! header: batch id | done | base | bytes | taken up | refused from | begun | cut
//!         (eight u64)
//! data:   the records of tasks base..done, `bytes` long (wire::batch records)
//! ```
//!
//! `done` counts the batch's tasks that have an outcome, either here or already sent to
//! the parent in a `Records` response; records before `base` were sent. The worker writes
//! a record, then `bytes`, then `done`; it clears `bytes` and moves `done` before `base`.
//! A worker killed between two stores leaves a journal that is short, never wrong.
//!
//! `taken up` and `refused from` let the parent take back jobs queued behind a task that
//! runs too long, without any chance that both this worker and another run them. Jobs sent
//! after the journal are numbered from 1 in the order they were sent (the worker takes
//! them up in that order). Before it begins one, run or skipped, the worker counts it
//! in `taken up`, then reads `refused from`: a job numbered at or past it (when it is
//! not 0) is refused, answered `Skipped`. To take back the jobs from number `n` on,
//! the parent stores `n` in `refused from`, then reads `taken up`: below `n`, the
//! worker had not taken up job `n` and will refuse it and those after it. Each side
//! stores before it reads, both sequentially consistent, so at least one of them sees
//! the other's store: if the parent does not, the worker refuses; if the worker runs
//! the job, the parent sees it taken up and keeps it. (Both may see each other: then
//! the worker refuses a job the parent kept, and the parent, reading `Skipped` for a
//! job nobody cancelled, gives it back.)
//!
//! `begun` and `cut` cut a running batch short the same way, task by task: before task `i`
//! of the batch it took up as job `n`, the worker stores `begun` (`n` and `i + 1`),
//! then reads `cut`: set for job `n` at `k <= i`, it begins no more tasks and ends the
//! batch's answer there. The parent stores `cut`, then reads `begun`. A check at every
//! task must cost next to nothing, so the worker orders its store and load with a
//! compiler fence only, and the parent, rarely, with a barrier in every running thread
//! (`sys::barrier_everywhere`), which gives the same guarantee as a fence on both
//! sides. A parent without that barrier does not cut.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::sys::SharedMemory;
use crate::wire::batch;

/// Size of a journal: records beyond it go to the parent early, in a partial response.
/// Pages are touched only as records fill them.
pub(crate) const JOURNAL_BYTES: usize = 2 << 20;

const ID: usize = 0;
const DONE: usize = 1;
const BASE: usize = 2;
const BYTES: usize = 3;
const TAKEN_UP: usize = 4;
const REFUSED_FROM: usize = 5;
const BEGUN: usize = 6;
const CUT: usize = 7;

/// A job's number and a task count in one word: the number's low 32 bits, then the
/// count's (a batch holds at most 65,536 tasks; two jobs of one worker 2^32 apart are
/// never both in question).
fn tag(number: u64, tasks: usize) -> u64 {
    (number << 32) | (tasks as u64 & 0xffff_ffff)
}

/// The job number's part of a [`tag`], and its count.
fn untag(word: u64) -> (u64, usize) {
    (word >> 32, (word & 0xffff_ffff) as usize)
}
const HEADER: usize = 64;

/// One worker's journal, as either side maps it.
#[derive(Debug)]
pub(crate) struct Journal {
    memory: SharedMemory,
}

/// What a dead worker's journal says of a batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Tasks of the batch with an outcome (recorded or already sent).
    pub(crate) done: usize,
    /// The records of tasks `from..done`, for the `from` asked for.
    pub(crate) records: Vec<u8>,
}

impl Journal {
    /// A new journal, made by the parent.
    pub(crate) fn create() -> io::Result<Journal> {
        Journal::over(SharedMemory::create_sealed(
            "procpool-journal",
            JOURNAL_BYTES,
        )?)
    }

    /// The journal whose descriptor the parent sent.
    pub(crate) fn open(fd: OwnedFd) -> io::Result<Journal> {
        Journal::over(SharedMemory::map(fd)?)
    }

    fn over(memory: SharedMemory) -> io::Result<Journal> {
        if memory.len() <= HEADER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "journal too small",
            ));
        }
        Ok(Journal { memory })
    }

    pub(crate) fn memory(&self) -> &SharedMemory {
        &self.memory
    }

    fn word(&self, index: usize) -> &AtomicU64 {
        debug_assert!(index < HEADER / 8);
        self.memory.word(index)
    }

    fn capacity(&self) -> usize {
        self.memory.len() - HEADER
    }

    // The worker's side.

    /// Starts the journal of batch `id`.
    pub(crate) fn begin(&mut self, id: u64) {
        // No batch while the words are reset: a parent reading the journal live sees
        // either the old batch whole, or none, or the new one.
        self.word(ID).store(0, Ordering::Release);
        self.word(DONE).store(0, Ordering::Release);
        self.word(BASE).store(0, Ordering::Release);
        self.word(BYTES).store(0, Ordering::Release);
        self.word(ID).store(id, Ordering::Release);
        // The records written from now on come after these stores for a reader that
        // sees them (see `peek`).
        fence(Ordering::Release);
    }

    /// Records the outcome of the next task. `false`, with nothing changed, if the
    /// record does not fit.
    pub(crate) fn record(&mut self, record: &[u8]) -> bool {
        let used = self.word(BYTES).load(Ordering::Relaxed) as usize;
        if record.len() > self.capacity() - used {
            return false;
        }
        // Only this process writes the data area.
        self.memory.write_at(HEADER + used, record);
        self.word(BYTES)
            .store((used + record.len()) as u64, Ordering::Release);
        self.word(DONE).fetch_add(1, Ordering::Release);
        true
    }

    /// Counts one more job taken up (the next by number): its number, or `None` if it
    /// is refused (see the module's notes): the worker answers `Skipped` and does not
    /// run it.
    pub(crate) fn take_up(&self) -> Option<u64> {
        let number = self.word(TAKEN_UP).fetch_add(1, Ordering::SeqCst) + 1;
        let refused_from = self.word(REFUSED_FROM).load(Ordering::SeqCst);
        (refused_from == 0 || number < refused_from).then_some(number)
    }

    /// Whether task `index` of the batch taken up as job `number` may begin: `false`
    /// once the parent has cut the batch at or before it (see the module's notes).
    pub(crate) fn may_begin(&self, number: u64, index: usize) -> bool {
        self.word(BEGUN)
            .store(tag(number, index + 1), Ordering::Relaxed);
        // The parent's barrier stands for the fence on this side.
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        let cut = self.word(CUT).load(Ordering::Relaxed);
        let (cut_number, from) = untag(cut);
        cut == 0 || cut_number != number & 0xffff_ffff || index < from
    }

    /// Tasks before `base` were sent to the parent: the data area starts over.
    pub(crate) fn sent_up_to(&mut self, base: usize) {
        self.word(BYTES).store(0, Ordering::Release);
        self.word(DONE).store(base as u64, Ordering::Release);
        self.word(BASE).store(base as u64, Ordering::Release);
        // The records rewritten from now on come after the new `base` (see `peek`).
        fence(Ordering::Release);
    }

    // The parent's side.

    /// Tasks of batch `id` with an outcome so far, if the worker has started it.
    pub(crate) fn progress(&self, id: u64) -> Option<u64> {
        // The id before and after: a batch that began in between is not read as this one.
        if self.word(ID).load(Ordering::Acquire) != id {
            return None;
        }
        let done = self.word(DONE).load(Ordering::Acquire);
        (self.word(ID).load(Ordering::Acquire) == id).then_some(done)
    }

    /// Takes back the jobs numbered `from` on: `true` if the worker had not taken up
    /// job `from`, and so will refuse it and every job after it until
    /// [`lift_refusal`](Self::lift_refusal). On `false` it may refuse some of them
    /// still; lift the refusal at once.
    pub(crate) fn refuse_from(&self, from: u64) -> bool {
        debug_assert!(from > 0, "jobs are numbered from 1");
        self.word(REFUSED_FROM).store(from, Ordering::SeqCst);
        self.word(TAKEN_UP).load(Ordering::SeqCst) < from
    }

    /// Cuts the batch running as job `number` before its task `from`: `true` if the
    /// worker had not begun that task, and so will begin none from it on. On `false`
    /// (it had, or the kernel has no barrier for it) it may stop at a later task
    /// still; lift the cut at once.
    pub(crate) fn cut(&self, number: u64, from: usize) -> bool {
        self.word(CUT).store(tag(number, from), Ordering::Relaxed);
        if crate::sys::barrier_everywhere().is_err() {
            return false;
        }
        let (begun_number, begun) = untag(self.word(BEGUN).load(Ordering::Relaxed));
        begun_number == number & 0xffff_ffff && begun <= from
    }

    /// Tasks may begin again past any cut.
    pub(crate) fn lift_cut(&self) {
        self.word(CUT).store(0, Ordering::Relaxed);
    }

    /// Jobs may be taken up again, by number, past any refusal.
    pub(crate) fn lift_refusal(&self) {
        self.word(REFUSED_FROM).store(0, Ordering::SeqCst);
    }

    /// How many of the jobs sent after the journal the worker has taken up (run,
    /// skipped or refused): job `n` had not begun when this was below `n`.
    pub(crate) fn taken_up(&self) -> u64 {
        self.word(TAKEN_UP).load(Ordering::SeqCst)
    }

    /// The records of batch `id` from task `from` to those done so far, read while its
    /// worker runs (on a task that takes long, say). `None` if there are none, if some
    /// of them were already sent in an answer not yet read (`from` is before the data
    /// area's base), or if the worker moved on while they were copied.
    pub(crate) fn peek(&self, id: u64, from: usize) -> Option<Recovered> {
        let before = self.word(ID).load(Ordering::Acquire);
        let base = self.word(BASE).load(Ordering::Acquire);
        let found = self.recover(id, usize::MAX, from)?;
        // The data area is rewritten only after `base` moves, or a new batch begins.
        std::sync::atomic::fence(Ordering::Acquire);
        let unchanged = self.word(BASE).load(Ordering::Acquire) == base
            && self.word(ID).load(Ordering::Acquire) == before;
        (unchanged && before == id && found.done > from && !found.records.is_empty())
            .then_some(found)
    }

    /// What the journal holds of batch `id` of `count` tasks, once its worker is dead,
    /// given that the parent already has the outcomes of tasks before `from`. `None`
    /// if it holds nothing of that batch, or nothing that can be trusted.
    pub(crate) fn recover(&self, id: u64, count: usize, from: usize) -> Option<Recovered> {
        if self.word(ID).load(Ordering::Acquire) != id {
            return None;
        }
        let done = usize::try_from(self.word(DONE).load(Ordering::Acquire)).ok()?;
        let base = usize::try_from(self.word(BASE).load(Ordering::Acquire)).ok()?;
        let bytes = usize::try_from(self.word(BYTES).load(Ordering::Acquire)).ok()?;
        if done > count || base > done || bytes > self.capacity() {
            return None;
        }
        if done <= from {
            return Some(Recovered {
                done,
                records: Vec::new(),
            });
        }
        if from < base {
            return None;
        }
        // A copy first: whatever else may still write to the region, the checks below
        // hold for the bytes returned.
        let mut data = vec![0u8; bytes];
        self.memory.read_at(HEADER, &mut data);
        let start = batch::prefix_len(&data, from - base)?;
        let end = start + batch::prefix_len(&data[start..], done - from)?;
        if !batch::records_are_well_formed(&data[start..end], done - from) {
            return None;
        }
        data.truncate(end);
        data.drain(..start);
        Some(Recovered {
            done,
            records: data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        batch::push_record(&mut buf, batch::output(&n));
        buf
    }

    /// Both sides of one region, as parent and worker see it.
    fn pair() -> (Journal, Journal) {
        let parent = Journal::create().unwrap();
        let fd = parent.memory().fd().try_clone_to_owned().unwrap();
        (parent, Journal::open(fd).unwrap())
    }

    #[test]
    fn jobs_not_taken_up_are_refused_once_taken_back() {
        let (parent, worker) = pair();
        assert_eq!(worker.take_up(), Some(1), "job 1 runs");
        assert_eq!(parent.taken_up(), 1);
        // Job 2 is running, 3 and 4 are behind it.
        assert_eq!(worker.take_up(), Some(2));
        assert!(parent.refuse_from(3), "3 was not taken up");
        assert_eq!(worker.take_up(), None, "3 is refused");
        assert_eq!(worker.take_up(), None, "4 is refused");
        parent.lift_refusal();
        assert_eq!(worker.take_up(), Some(5), "5, sent after the lift, runs");
        // Too late: 6 was taken up before the parent tried.
        assert_eq!(worker.take_up(), Some(6));
        assert!(!parent.refuse_from(6));
        parent.lift_refusal();
        assert_eq!(parent.taken_up(), 6);
    }

    #[test]
    fn a_batch_cut_before_a_task_begins_no_task_from_there() {
        let (parent, worker) = pair();
        // Job 3, a batch: tasks 0 and 1 begun, 1 runs long.
        assert!(worker.may_begin(3, 0) && worker.may_begin(3, 1));
        assert!(parent.cut(3, 2), "task 2 had not begun");
        assert!(!worker.may_begin(3, 2), "nor does it now");
        // A cut of job 3 says nothing of job 4.
        assert!(worker.may_begin(4, 2));
        parent.lift_cut();
        // Too late: task 5 of job 4 has begun; lifted, the batch goes on.
        assert!(worker.may_begin(4, 5));
        assert!(!parent.cut(4, 5));
        parent.lift_cut();
        assert!(worker.may_begin(4, 6));
    }

    #[test]
    fn the_parent_reads_finished_records_while_the_batch_runs() {
        let (parent, mut worker) = pair();
        worker.begin(8);
        assert_eq!(parent.peek(8, 0), None, "nothing done yet");
        for n in 0..3 {
            assert!(worker.record(&record(n)));
        }
        let found = parent.peek(8, 1).unwrap();
        assert_eq!(found.done, 3);
        let mut expected = record(1);
        expected.extend(record(2));
        assert_eq!(found.records, expected);
        assert_eq!(parent.peek(7, 0), None, "another batch");
        assert_eq!(parent.peek(8, 3), None, "nothing new");
        // Sent in an answer the parent has not read yet: not read twice over.
        worker.sent_up_to(3);
        assert!(worker.record(&record(3)));
        assert_eq!(parent.peek(8, 2), None);
        assert_eq!(parent.peek(8, 3).unwrap().records, record(3));
    }

    #[test]
    fn the_parent_reads_what_the_worker_recorded() {
        let (parent, mut worker) = pair();
        assert_eq!(parent.recover(5, 4, 0), None, "a journal of another batch");
        worker.begin(5);
        assert_eq!(parent.progress(5), Some(0));
        assert_eq!(parent.progress(4), None);
        for n in 0..3 {
            assert!(worker.record(&record(n)));
        }
        assert_eq!(parent.progress(5), Some(3));
        let all = parent.recover(5, 4, 0).unwrap();
        assert_eq!(all.done, 3);
        assert_eq!(all.records, [record(0), record(1), record(2)].concat());
        // Tasks the parent already has are left out.
        let tail = parent.recover(5, 4, 2).unwrap();
        assert_eq!(tail.records, record(2));
        assert_eq!(parent.recover(5, 4, 3).unwrap().records, Vec::<u8>::new());
    }

    #[test]
    fn after_a_partial_send_the_records_start_over() {
        let (parent, mut worker) = pair();
        worker.begin(1);
        assert!(worker.record(&record(0)));
        assert!(worker.record(&record(1)));
        worker.sent_up_to(2);
        assert!(worker.record(&record(2)));
        let recovered = parent.recover(1, 3, 2).unwrap();
        assert_eq!((recovered.done, recovered.records), (3, record(2)));
        // Records before the base are gone: a parent missing them cannot trust it.
        assert_eq!(parent.recover(1, 3, 1), None);
    }

    #[test]
    fn a_full_journal_refuses_and_a_scribbled_one_is_not_trusted() {
        let (parent, mut worker) = pair();
        worker.begin(2);
        assert!(!worker.record(&vec![0; JOURNAL_BYTES]));
        assert_eq!(parent.progress(2), Some(0));
        assert!(worker.record(&record(9)));
        // Claims more tasks than the batch has.
        assert_eq!(parent.recover(2, 0, 0), None);
        // Claims a record that is not there.
        worker.word(DONE).store(2, Ordering::Release);
        assert_eq!(parent.recover(2, 5, 0), None);
        // Bytes that do not form records.
        worker.word(DONE).store(1, Ordering::Release);
        worker.memory.write_at(HEADER + 4, &[9]);
        assert_eq!(parent.recover(2, 5, 0), None);
    }
}
