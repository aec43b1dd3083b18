//! [`Shared`]: what a pool and its slots' supervisor threads share.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::config::Config;
use super::gate::Gate;
use super::job::Job;
use super::telemetry::Telemetry;
use crate::launch::spawner::Starter;
use crate::output::reader::OutputReader;
use crate::slot::reaper::Reaper;

/// What the pool and its supervisor threads share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) spawner: Box<dyn Starter>,
    pub(crate) queue: Receiver<Job>,
    /// Jobs a slot took back from its worker for another (see `slot::pipeline`): a
    /// slot looking for work takes these before the queue's.
    returned: (Sender<Job>, Receiver<Job>),
    pub(crate) gate: Arc<Gate>,
    pub(crate) reaper: Reaper,
    /// Where what happens is counted and told: held by tickets too.
    pub(crate) telemetry: Arc<Telemetry>,
    terminating: AtomicBool,
    live_slots: AtomicUsize,
    next_id: AtomicU64,
    /// The output readers of the workers started, until they have closed their pipes.
    readers: Mutex<Vec<OutputReader>>,
}

impl Shared {
    /// The state of a new pool with `config`, whose slots take jobs from `queue`.
    pub(crate) fn new(config: Config, spawner: Box<dyn Starter>, queue: Receiver<Job>) -> Shared {
        Shared {
            gate: Arc::new(Gate::new(config.max_in_flight)),
            reaper: Reaper::new(),
            telemetry: Arc::new(Telemetry::new(config.events.clone(), config.workers)),
            live_slots: AtomicUsize::new(config.workers),
            config,
            spawner,
            queue,
            returned: crossbeam_channel::unbounded(),
            terminating: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            readers: Mutex::new(Vec::new()),
        }
    }

    /// Keeps a new worker's output readers, for `join` to wait on.
    pub(crate) fn track_readers(&self, readers: [OutputReader; 2]) {
        let mut tracked = lock(&self.readers);
        tracked.retain(|r| !r.is_done());
        tracked.extend(readers);
    }

    /// Waits, up to `wait` in all, until every worker's output readers have read to
    /// end-of-file and closed their pipes: `join` leaves no descriptor behind, unless
    /// a process a task left in the background still holds one.
    pub(crate) fn wait_for_readers(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        let readers = std::mem::take(&mut *lock(&self.readers));
        for reader in readers {
            reader.wait_done(deadline.saturating_duration_since(Instant::now()));
        }
    }

    /// Hands a job taken back from a worker to whichever slot looks for work next.
    ///
    /// A batch goes under a new id: the journal of the worker it was taken from may
    /// still hold an earlier run of it under the old one, and the slot may send it to
    /// that worker again.
    pub(crate) fn give_back(&self, mut job: Job) {
        if job.is_batch() {
            job.renumber(self.new_id());
        }
        self.returned.0.send(job).expect("the pool holds both ends");
    }

    /// Jobs handed back, for slots looking for work.
    pub(crate) fn returned(&self) -> &Receiver<Job> {
        &self.returned.1
    }

    /// A job id no other job of this pool has.
    pub(crate) fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// From now on every slot kills its worker and ends its jobs in `PoolClosed`.
    pub(crate) fn set_terminating(&self) {
        self.terminating.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_terminating(&self) -> bool {
        self.terminating.load(Ordering::SeqCst)
    }

    /// Called by a slot that gives up on starting workers; `true` for the last one.
    pub(crate) fn slot_gave_up(&self) -> bool {
        self.live_slots.fetch_sub(1, Ordering::SeqCst) == 1
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
