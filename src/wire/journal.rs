//! The batch journal: a small shared-memory region per worker in which it records each
//! finished task of a batch before starting the next, so that a crash mid-batch loses
//! nothing that had finished.
//!
//! The parent makes the region and sends its descriptor (`Request::Journal`) before the
//! worker's first batch of more than one task. The worker writes; the parent reads the
//! progress counter while the worker runs (to time each task of the batch from its own
//! start), and the records only once the worker is dead.
//!
//! ```text
//! header: batch id | done | base | bytes | taken up | refused from   (six u64)
//! data:   the records of tasks base..done, `bytes` long (wire::batch records)
//! ```
//!
//! `done` counts the batch's tasks that have an outcome, either here or already sent to
//! the parent in a `Batch` response; records before `base` were sent. The worker writes
//! a record, then `bytes`, then `done`; it clears `bytes` and moves `done` before `base`.
//! A worker killed between two stores leaves a journal that is short, never wrong.
//!
//! The last two words let the parent take back jobs queued behind a task that runs too
//! long, without any chance that both this worker and another run them. Jobs sent
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

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

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
        self.word(DONE).store(0, Ordering::Release);
        self.word(BASE).store(0, Ordering::Release);
        self.word(BYTES).store(0, Ordering::Release);
        self.word(ID).store(id, Ordering::Release);
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

    /// Counts one more job taken up (the next by number); `false` if it is refused
    /// (see the module's notes): the worker answers `Skipped` and does not run it.
    pub(crate) fn take_up(&self) -> bool {
        let number = self.word(TAKEN_UP).fetch_add(1, Ordering::SeqCst) + 1;
        let refused_from = self.word(REFUSED_FROM).load(Ordering::SeqCst);
        refused_from == 0 || number < refused_from
    }

    /// Tasks before `base` were sent to the parent: the data area starts over.
    pub(crate) fn sent_up_to(&mut self, base: usize) {
        self.word(BYTES).store(0, Ordering::Release);
        self.word(DONE).store(base as u64, Ordering::Release);
        self.word(BASE).store(base as u64, Ordering::Release);
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

    /// Jobs may be taken up again, by number, past any refusal.
    pub(crate) fn lift_refusal(&self) {
        self.word(REFUSED_FROM).store(0, Ordering::SeqCst);
    }

    /// How many of the jobs sent after the journal the worker has taken up (run,
    /// skipped or refused): job `n` had not begun when this was below `n`.
    pub(crate) fn taken_up(&self) -> u64 {
        self.word(TAKEN_UP).load(Ordering::SeqCst)
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
        assert!(worker.take_up(), "job 1 runs");
        assert_eq!(parent.taken_up(), 1);
        // Job 2 is running, 3 and 4 are behind it.
        assert!(worker.take_up());
        assert!(parent.refuse_from(3), "3 was not taken up");
        assert!(!worker.take_up(), "3 is refused");
        assert!(!worker.take_up(), "4 is refused");
        parent.lift_refusal();
        assert!(worker.take_up(), "5, sent after the lift, runs");
        // Too late: 6 was taken up before the parent tried.
        assert!(worker.take_up());
        assert!(!parent.refuse_from(6));
        parent.lift_refusal();
        assert_eq!(parent.taken_up(), 6);
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
