//! Starting a slot's worker: spawning it (or taking one forked when the pool was
//! built), its `Setup` and an early job, waiting for `Ready`, failed starts and their
//! back-off, and taking a job back from a worker whose start failed ([`recall`]).

use std::collections::VecDeque;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use super::event::ExitCause;
use super::process::WorkerProcess;
use super::state::{Backlog, State};
use super::supervisor::{Supervisor, MAX_BACKOFF, TAIL_WAIT, TICK};
use super::worker::{send_jobs, InFlight, Worker};
use crate::error::TaskError;
use crate::link::{ParentEnd, RecvError};
use crate::pool::job::Job;
use crate::sys;
use crate::wire::frame::{self, Request, Response};

impl Supervisor {
    /// Starts a worker. A job already waiting goes out right behind its `Setup`,
    /// without waiting for `Ready` (a death before `Ready` still counts as a failed
    /// start, and the job goes back to the backlog); with none waiting, the slot waits
    /// for `Ready`, so an idle slot always has a warm worker.
    pub(super) fn starting(&self, failures: u32, mut backlog: Backlog) -> State {
        if self.shared.is_terminating() {
            return State::Terminating {
                worker: None,
                backlog,
            };
        }
        let (worker, sent) = self.start(failures, &mut backlog);
        let mut worker = match worker {
            Ok(mut worker) => {
                worker.start_failures = failures;
                worker
            }
            Err(message) => {
                // A job sent to a worker that never started goes back, no attempt
                // counted.
                if let Some(job) = sent {
                    backlog.push_front(job);
                }
                return self.start_failed(failures, message, backlog);
            }
        };
        let deadline = Instant::now() + self.shared.config.start_timeout;
        if let Some(job) = sent {
            worker.process.began_with(job.name);
            return State::Greeting {
                worker,
                in_flight: VecDeque::from([InFlight::new(job)]),
                backlog,
                deadline,
            };
        }
        if let Some(job) = self.next_job(&mut backlog) {
            return self.dispatch(worker, job, backlog, Some(deadline));
        }
        match self.await_ready(&mut worker) {
            Ok(()) => State::Idle { worker, backlog },
            // Stopped because the pool terminates: it did not fail its start.
            Err(_) if self.shared.is_terminating() => State::Terminating {
                worker: Some(worker),
                backlog,
            },
            Err(message) => {
                self.exited(worker, ExitCause::FailedStart(message.clone()));
                self.start_failed(failures, message, backlog)
            }
        }
    }

    /// A start failed (`failures` had failed before it): back off and try again, or
    /// give up.
    pub(super) fn start_failed(&self, failures: u32, message: String, backlog: Backlog) -> State {
        if self.shared.is_terminating() {
            return State::Terminating {
                worker: None,
                backlog,
            };
        }
        if failures + 1 >= self.shared.config.max_start_failures {
            return State::GaveUp { message, backlog };
        }
        self.back_off(failures + 1);
        State::Starting {
            failures: failures + 1,
            backlog,
        }
    }

    /// Starts a worker (or takes one forked when the pool was built) and sends it its
    /// `Setup`. After a start that did not fail, a single task already waiting (of a
    /// batch, its first) goes into the link too, before the worker's process is known
    /// (the fork server's answer takes a while, and the worker reads its task as soon
    /// as it is ready); that job comes back too.
    fn start(&self, failures: u32, backlog: &mut Backlog) -> (Result<Worker, String>, Option<Job>) {
        let program = || self.shared.spawner.program();
        let (mut link, spawning) = match self.shared.spawner.take_prestarted() {
            // Forked already, `Setup` written into its link before the fork.
            Some(prestarted) => prestarted,
            None => {
                let (mut link, worker_end) = match ParentEnd::pair() {
                    Ok(pair) => pair,
                    Err(e) => return (Err(format!("cannot make a link socket: {e}")), None),
                };
                // Sent before the worker exists, so it is there to read as soon as the
                // worker starts. (A context larger than the socket's buffer goes out in
                // part now, the rest while the slot waits for answers.)
                if let Err(e) = link.send(&self.shared.config.setup_frame()) {
                    return (Err(format!("cannot write to a new link socket: {e}")), None);
                }
                match self.shared.spawner.start(worker_end) {
                    Ok(spawning) => (link, spawning),
                    Err(e) => return (Err(format!("cannot run {}: {e}", program())), None),
                }
            }
        };
        // A slot whose starts fail takes no job from the others until one succeeds.
        let mut sent = None;
        if failures == 0 {
            if let Some(job) = self.next_job(backlog) {
                // Of a batch, the first task only: a worker takes more at once only
                // with a batch journal (see `fit`); the rest goes out, cut to its
                // room, once that task is answered.
                let job = self.first_tasks(job, 1, backlog);
                if send_jobs(&mut link, [&job]).is_err() {
                    backlog.push_front(job);
                } else {
                    sent = Some(job);
                }
            }
        }
        match self.shared.spawner.finish(spawning) {
            Ok(process) => (Ok(self.adopt(link, process)), sent),
            Err(e) => {
                let message = format!("cannot run {}: {e}", program());
                let sent = match sent.map(|job| recall(&mut link, job)) {
                    None => None,
                    Some(Recalled::NotStarted(job)) => Some(job),
                    // That worker cannot be stopped (its pid is not known) and may still
                    // be running the task: no retry.
                    Some(Recalled::MayHaveStarted(job)) => {
                        let message = format!("{message}; its worker may have started the task");
                        self.fail(job, None, TaskError::WorkerStart { message });
                        None
                    }
                };
                (Err(message), sent)
            }
        }
    }

    /// The slot's worker, once its process is known.
    fn adopt(&self, link: ParentEnd, process: WorkerProcess) -> Worker {
        self.shared.track_readers(process.readers());
        self.telemetry().worker_started(self.slot, process.pid());
        Worker {
            process,
            link,
            tasks: 0,
            start_failures: 0,
            head_started: Instant::now(),
            per_task: None,
            journal: None,
            numbered: 0,
            taken_back: VecDeque::new(),
        }
    }

    /// Waits, with the start deadline, for a just-started worker's `Ready`.
    fn await_ready(&self, worker: &mut Worker) -> Result<(), String> {
        let deadline = Instant::now() + self.shared.config.start_timeout;
        loop {
            match worker.link.recv_timeout(TICK) {
                Ok(frame) => return frame::ready_protocol(&frame).map_err(|p| self.not_ready(p)),
                Err(RecvError::Closed) => return Err(self.died_starting(worker)),
                Err(RecvError::Broken(message)) => return Err(message),
                // Its output is read from the first tick on, as in Busy.
                Err(RecvError::Timeout) => worker.process.start_output(),
            }
            if self.shared.is_terminating() {
                return Err("pool terminated during start-up".to_owned());
            }
            // Dead, yet the socket is open: something it started holds the other end.
            if worker.process.try_wait().is_some() {
                return Err(self.died_starting(worker));
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready_in_time());
            }
        }
    }

    /// Why a worker's answer to its set-up was no `Ready` of this protocol: it was of
    /// protocol `Some(n)`, or no `Ready` at all.
    pub(super) fn not_ready(&self, protocol: Option<u32>) -> String {
        match protocol {
            Some(theirs) => format!(
                "worker {} speaks procpool protocol {theirs}, this pool speaks protocol {} \
                 (procpool {}): build the worker from the same procpool version",
                self.shared.spawner.program(),
                frame::PROTOCOL,
                frame::RELEASE,
            ),
            None => "worker answered its set-up with a malformed frame".to_owned(),
        }
    }

    pub(super) fn not_ready_in_time(&self) -> String {
        format!(
            "worker {} was not ready within {:?}",
            self.shared.spawner.program(),
            self.shared.config.start_timeout
        )
    }

    /// Why a worker ended while idle before its first task: its exit and its first
    /// words.
    pub(super) fn died_idle(&self, worker: &mut Worker) -> String {
        self.died(worker, "while idle, before its first task")
    }

    /// Why a worker ended before it was ready: its exit and its first words, which
    /// usually say why (a backtrace may follow and fill the tail).
    pub(super) fn died_starting(&self, worker: &mut Worker) -> String {
        self.died(worker, "before it was ready")
    }

    /// "worker `program` `how it ended` `when`", with its first stderr line.
    fn died(&self, worker: &mut Worker, when: &str) -> String {
        let status = worker.process.wait_or_kill(self.shared.config.kill_grace);
        let said = worker.process.first_stderr_line(TAIL_WAIT);
        format!(
            "worker {} {} {when}{}",
            self.shared.spawner.program(),
            describe_status(status),
            said.map(|l| format!("; its first stderr line: {l}"))
                .unwrap_or_default()
        )
    }

    fn back_off(&self, failures: u32) {
        let pause = (Duration::from_millis(25) * 2u32.saturating_pow(failures)).min(MAX_BACKOFF);
        let until = Instant::now() + pause;
        while Instant::now() < until && !self.shared.is_terminating() {
            thread::sleep(TICK);
        }
    }
}

fn describe_status(status: ExitStatus) -> String {
    match (status.signal(), status.code()) {
        (Some(signal), _) => format!("was killed by {}", sys::signal_name(signal)),
        (None, Some(code)) => format!("exited with code {code}"),
        (None, None) => "ended".to_owned(),
    }
}

/// What became of a job sent to a worker whose start failed.
#[derive(Debug)]
enum Recalled {
    /// It never started and never will: it goes back.
    NotStarted(Job),
    /// It may have started.
    MayHaveStarted(Job),
}

/// Takes back `job`, sent into the link of a worker whose start then failed (the fork
/// server's answer did not come, so the worker may exist). A `Run` frame not yet all in
/// the socket cannot have been read whole. Otherwise a `Skip` goes after it: a worker
/// reads every frame that has come before it starts a task, and answers `Ready` before
/// it reads any, so if the `Skip` went in whole and the link holds no `Ready` (or holds
/// the `Skipped` answer), the worker had not started the task and now never will, and
/// the job comes back. Otherwise it may have run.
fn recall(link: &mut ParentEnd, job: Job) -> Recalled {
    if !link.is_flushed() {
        return Recalled::NotStarted(job);
    }
    let skip_arrives = match link.send(&frame::header_only(&Request::Skip { id: job.id })) {
        Ok(()) => link.is_flushed(),
        // The worker's end is closed: nobody is left to read anything.
        Err(e) => matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ),
    };
    let mut ready = false;
    while let Ok(frame) = link.recv_timeout(Duration::ZERO) {
        match frame::decode(&frame) {
            Ok((Response::Skipped { id }, _)) if id == job.id => return Recalled::NotStarted(job),
            Ok((Response::Ready { .. }, _)) => ready = true,
            _ => {}
        }
    }
    if ready || !skip_arrives {
        return Recalled::MayHaveStarted(job);
    }
    Recalled::NotStarted(job)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::WorkerEnd;
    use crate::pool::job::{Encoded, Ticket, Work};
    use std::sync::Arc;

    fn job() -> (Job, Arc<Ticket>) {
        let ticket = Arc::new(Ticket::new(None));
        assert!(ticket.start());
        let job = Job {
            id: 7,
            attempts: 0,
            options: crate::pool::job::JobOptions {
                timeout: None,
                retries: 0,
            },
            ticket: ticket.clone(),
            work: Work::One(Encoded::default()),
            types: crate::task::TaskTypes::pair::<(), ()>(),
            name: "recalled",
            trace: Default::default(),
        };
        (job, ticket)
    }

    /// The frames a worker end has received, as requests.
    fn requests(worker: &mut WorkerEnd) -> Vec<Request> {
        let mut found = Vec::new();
        while let Some(Some(frame)) = worker.try_recv() {
            found.push(frame::decode::<Request>(&frame).unwrap().0);
        }
        found
    }

    fn not_started(back: Recalled) -> bool {
        matches!(back, Recalled::NotStarted(job) if job.id == 7)
    }

    /// Recalled, `job` may have run (the caller ends it in `WorkerStart`).
    fn may_have_started(back: Recalled, ticket: &Ticket) -> bool {
        !ticket.is_done() && matches!(back, Recalled::MayHaveStarted(job) if job.id == 7)
    }

    #[test]
    fn a_recalled_job_whose_worker_never_said_ready_did_not_start_and_is_skipped() {
        let (mut link, end) = ParentEnd::pair().unwrap();
        let mut worker = WorkerEnd::new(end).unwrap();
        let (job, ticket) = job();
        assert!(not_started(recall(&mut link, job)));
        assert!(!ticket.is_done());
        assert!(matches!(
            requests(&mut worker)[..],
            [Request::Skip { id: 7 }]
        ));
    }

    #[test]
    fn a_recalled_job_whose_worker_is_gone_without_ready_did_not_start() {
        let (mut link, end) = ParentEnd::pair().unwrap();
        drop(end);
        let (job, _) = job();
        assert!(not_started(recall(&mut link, job)));
    }

    /// A link whose worker has answered its `Setup`.
    fn link_after_ready() -> (ParentEnd, WorkerEnd) {
        let (link, end) = ParentEnd::pair().unwrap();
        let mut worker = WorkerEnd::new(end).unwrap();
        let ready = Response::Ready {
            protocol: frame::PROTOCOL,
            release: frame::RELEASE.to_owned(),
        };
        worker.send(&frame::header_only(&ready)).unwrap();
        (link, worker)
    }

    #[test]
    fn a_recalled_job_whose_worker_said_ready_may_have_started() {
        let (mut link, _worker) = link_after_ready();
        let (sent, ticket) = job();
        let back = recall(&mut link, sent);
        assert!(may_have_started(back, &ticket));
        // Also once the worker is gone: its Ready is still there to read.
        let (mut link, worker) = link_after_ready();
        drop(worker);
        let (sent, ticket) = job();
        let back = recall(&mut link, sent);
        assert!(may_have_started(back, &ticket));
    }

    #[test]
    fn a_recalled_job_that_its_worker_skipped_did_not_start() {
        let (mut link, mut worker) = link_after_ready();
        let skipped = frame::header_only(&Response::Skipped { id: 7 });
        worker.send(&skipped).unwrap();
        let (job, _) = job();
        assert!(not_started(recall(&mut link, job)));
    }

    #[test]
    fn a_recalled_job_not_all_in_the_socket_did_not_start() {
        let (mut link, _worker) = link_after_ready();
        // More than a socket buffer takes at once: the rest waits in the link.
        link.send(&vec![0u8; 8 << 20]).unwrap();
        assert!(!link.is_flushed());
        let (job, _) = job();
        assert!(not_started(recall(&mut link, job)));
    }
}
