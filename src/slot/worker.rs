//! The slot's view of its worker: the process and its link, what has been sent to it
//! ([`InFlight`]), and the sends and checks every state makes of it.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use super::process::WorkerProcess;
use crate::link::{ParentEnd, RecvError};
use crate::pool::job::Job;
use crate::wire::journal::Journal;

/// A started worker: its process and its link.
#[derive(Debug)]
pub(super) struct Worker {
    pub(super) process: WorkerProcess,
    pub(super) link: ParentEnd,
    pub(super) tasks: u64,
    /// Failed starts in a row before this worker's: a worker that dies before its
    /// first task, soon after its start, is one more.
    pub(super) start_failures: u32,
    /// When the job at the head of the pipeline started (as far as the parent can
    /// tell: when the answer before it arrived, or when it was sent to an idle worker).
    pub(super) head_started: Instant,
    /// Mean time per task lately, in seconds; `None` before the first answer.
    pub(super) per_task: Option<f64>,
    /// Where it records batch progress and counts the jobs it takes up; made before
    /// its first batch of several tasks, or its first job sent behind another.
    pub(super) journal: Option<Journal>,
    /// The number of the last job sent after the journal (see `wire::journal`).
    pub(super) numbered: u64,
    /// Jobs taken back from behind a long task, by id, in the order sent: the worker
    /// answers `Skipped` for each, and is sent nothing new until it has.
    pub(super) taken_back: VecDeque<u64>,
}

impl Worker {
    /// The head job answered in full (`tasks` outcomes): the next one has started.
    pub(super) fn finished(&mut self, tasks: usize) {
        let now = Instant::now();
        let took = now.duration_since(self.head_started).as_secs_f64();
        self.per_task = Some(self.per_task.map_or(took, |mean| 0.8 * mean + 0.2 * took));
        self.head_started = now;
        self.tasks += tasks as u64;
        self.process.clear_stderr_tail();
    }

    /// The head job was skipped, or refused: the next one has started. It ran nothing,
    /// so the time per task is left as it was.
    pub(super) fn skipped(&mut self) {
        self.head_started = Instant::now();
        self.process.clear_stderr_tail();
    }

    /// The head batch answered for `tasks` of its tasks: the next of them has started.
    pub(super) fn progressed(&mut self, tasks: usize) {
        self.head_started = Instant::now();
        self.tasks += tasks as u64;
        self.process.clear_stderr_tail();
    }
}

/// A job sent to the worker, and whether it has been told to skip it.
pub(super) struct InFlight {
    pub(super) job: Job,
    /// Its number if it was sent after the journal: the worker had not begun it while
    /// the journal counted fewer jobs taken up.
    pub(super) number: Option<u64>,
    pub(super) skip_sent: Option<Instant>,
    /// A batch's tasks delivered so far: answered by this worker, or read from its
    /// journal while a later task ran.
    pub(super) received: usize,
    /// A batch's tasks this worker has answered for so far.
    pub(super) answered: usize,
    /// The slot tried to cut the batch short: its last answer may end early.
    pub(super) cut: bool,
    /// A batch's tasks that the journal showed done at the last look.
    pub(super) seen: u64,
}

impl InFlight {
    pub(super) fn new(job: Job) -> InFlight {
        InFlight {
            job,
            number: None,
            skip_sent: None,
            received: 0,
            answered: 0,
            cut: false,
            seen: 0,
        }
    }
}

/// Whether an idle worker is still there to take a job: its link neither closed nor
/// broken, no frame on it (an idle worker has nothing to say; one that speaks breaks
/// the protocol and is replaced), and its process not ended (something it started may
/// hold the link open).
pub(super) fn idle_worker_lives(worker: &mut Worker) -> bool {
    match worker.link.recv_timeout(Duration::ZERO) {
        Err(RecvError::Timeout) => worker.process.try_wait().is_none(),
        Ok(_) | Err(RecvError::Closed | RecvError::Broken(_)) => false,
    }
}

impl Worker {
    /// Sends `jobs`, in order, numbering them if the worker has a journal.
    pub(super) fn send<'a>(
        &mut self,
        jobs: impl IntoIterator<Item = &'a mut InFlight>,
    ) -> io::Result<()> {
        let mut sent = Vec::new();
        for f in jobs {
            if self.journal.is_some() {
                self.numbered += 1;
                f.number = Some(self.numbered);
            }
            sent.push(&f.job);
        }
        send_jobs(&mut self.link, sent)
    }

    /// Whether the worker had begun the job numbered `number` (`None`: sent before the
    /// journal, so it cannot tell; it may have).
    pub(super) fn may_have_begun(&self, number: Option<u64>) -> bool {
        match (number, &self.journal) {
            (Some(n), Some(journal)) => journal.taken_up() >= n,
            _ => true,
        }
    }
}

/// Sends the frames of `jobs` in order: those without descriptors together, in one
/// system call where the socket takes them, each with descriptors on its own.
pub(super) fn send_jobs<'a>(
    link: &mut ParentEnd,
    jobs: impl IntoIterator<Item = &'a Job>,
) -> io::Result<()> {
    let mut plain: Vec<[&[u8]; 2]> = Vec::new();
    for job in jobs {
        let fds = job.fds();
        if fds.is_empty() {
            plain.push(job.frame());
            continue;
        }
        if !plain.is_empty() {
            link.send_many(&plain)?;
            plain.clear();
        }
        link.send_with_fds(job.frame(), &fds)?;
    }
    if plain.is_empty() {
        return Ok(());
    }
    link.send_many(&plain)
}
