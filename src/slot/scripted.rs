//! The supervisor driven without processes. A [`Scripted`] starter stands where the
//! pool's `Spawner` stands: each "worker" it starts is a thread on a real link socket
//! that follows a script, and each process handle is a [`FakeChild`] that records the
//! signals it gets and dies of them. Each test runs one slot through a path of its
//! state machine and checks the outcomes, the signals and the events told.

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::Sender;

use super::event::{Event, Events, ExitCause};
use super::process::{Pipes, Reap, WorkerProcess};
use super::supervisor::Supervisor;
use crate::error::TaskError;
use crate::launch::spawner::{Spawning, Starter};
use crate::link::{ParentEnd, WorkerEnd};
use crate::pool::job::{Encoded, Job, JobOptions, Ticket, Work};
use crate::pool::shared::Shared;
use crate::sys::{self, Signal};
use crate::task::TaskTypes;
use crate::wire::frame::{self, Request, Response};
use crate::wire::journal::Journal;
use crate::{Pool, PoolBuilder};

/// How a scripted worker answers its `Setup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// `Ready`, then it serves.
    Ready,
    /// Nothing, until it is killed.
    Silent,
    /// It exits with code 3.
    Dies,
}

/// How a fake process ended, and the signals it got.
#[derive(Debug, Default)]
struct Fate {
    status: Mutex<Option<ExitStatus>>,
    ended: Condvar,
    signals: Mutex<Vec<&'static str>>,
    /// Jobs it refused, having been taken back (see `wire::journal`).
    refused: AtomicUsize,
}

impl Fate {
    /// The process ends with `status`, unless it has ended already.
    fn end(&self, status: ExitStatus) {
        let mut current = lock(&self.status);
        if current.is_none() {
            *current = Some(status);
            self.ended.notify_all();
        }
    }

    fn has_ended(&self) -> bool {
        lock(&self.status).is_some()
    }

    fn signals(&self) -> Vec<&'static str> {
        lock(&self.signals).clone()
    }
}

/// A process handle over a [`Fate`]: SIGTERM and SIGKILL end it.
#[derive(Debug)]
struct FakeChild {
    pid: u32,
    fate: Arc<Fate>,
}

impl Reap for FakeChild {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn has_exited(&mut self) -> bool {
        self.fate.has_ended()
    }

    fn signal_group(&mut self, signal: Signal) {
        lock(&self.fate.signals).push(signal.as_str());
        if signal == sys::TERM || signal == sys::KILL {
            self.fate.end(ExitStatus::from_raw(signal as i32));
        }
    }

    fn reap(&mut self) -> ExitStatus {
        let mut status = lock(&self.fate.status);
        loop {
            if let Some(status) = *status {
                return status;
            }
            status = self.fate.ended.wait(status).unwrap();
        }
    }
}

/// Starts scripted workers: the `n`th start follows `starts[n]` (then `Start::Ready`).
#[derive(Debug)]
struct Scripted {
    starts: Mutex<VecDeque<Start>>,
    /// The fates of the workers started, in order.
    fates: Arc<Mutex<Vec<Arc<Fate>>>>,
}

impl Starter for Scripted {
    fn program(&self) -> String {
        "scripted".to_owned()
    }

    fn take_prestarted(&self) -> Option<(ParentEnd, Spawning)> {
        None
    }

    fn start(&self, socket: OwnedFd) -> io::Result<Spawning> {
        let start = lock(&self.starts).pop_front().unwrap_or(Start::Ready);
        let fate = Arc::new(Fate::default());
        let n = {
            let mut fates = lock(&self.fates);
            fates.push(fate.clone());
            fates.len() - 1
        };
        let end = WorkerEnd::new(socket)?;
        let serving = fate.clone();
        thread::spawn(move || serve(end, start, &serving, n));
        // Far above any pid the kernel gives out: no real process is ever signalled.
        let pid = 900_000_000 + n as u32;
        let child = FakeChild { pid, fate };
        Ok(Spawning::Exec(WorkerProcess::new(
            Box::new(child),
            Pipes::default(),
        )))
    }

    fn finish(&self, spawning: Spawning) -> io::Result<WorkerProcess> {
        match spawning {
            Spawning::Exec(process) => Ok(process),
            other => Err(io::Error::other(format!("not scripted: {other:?}"))),
        }
    }
}

/// The next frame from the parent; `None` once the fake process has ended (its end of
/// the link then closes) or the parent is gone.
fn next_frame(end: &mut WorkerEnd, fate: &Fate) -> Option<Vec<u8>> {
    loop {
        if fate.has_ended() {
            return None;
        }
        match end.try_recv()? {
            Some(frame) => return Some(frame),
            None => thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Worker `n`'s script. A task's payload says what it does: `ok` answers with the
/// payload and the worker's number (`ok@0`); `tick` does so after 200 µs, `slow` after
/// 100 ms; `crash` dies
/// of SIGSEGV; `hang` runs until a signal ends it; `garbage` answers with bytes that
/// are no frame; `quit` answers, then exits with code 0 while idle. Like a real
/// worker, it counts the jobs it takes up in its journal and refuses those taken back.
fn serve(mut end: WorkerEnd, start: Start, fate: &Fate, n: usize) {
    if next_frame(&mut end, fate).is_none() {
        return;
    }
    match start {
        Start::Ready => {}
        Start::Silent => {
            while next_frame(&mut end, fate).is_some() {}
            return;
        }
        Start::Dies => return fate.end(ExitStatus::from_raw(3 << 8)),
    }
    let ready = Response::Ready {
        protocol: frame::PROTOCOL,
        release: frame::RELEASE.to_owned(),
    };
    if end.send(&frame::header_only(&ready)).is_err() {
        return;
    }
    let mut journal = None;
    while let Some(frame) = next_frame(&mut end, fate) {
        let (request, len) = frame::decode::<Request>(&frame).expect("a request");
        let id = match request {
            Request::Run { id, .. } => id,
            Request::Shutdown => return fate.end(ExitStatus::from_raw(0)),
            Request::Journal => {
                let fd = end.take_fds(1).and_then(|mut fds| fds.pop());
                journal = Some(Journal::open(fd.expect("its descriptor")).unwrap());
                continue;
            }
            _ => continue,
        };
        if journal
            .as_ref()
            .is_some_and(|j: &Journal| j.take_up().is_none())
        {
            fate.refused.fetch_add(1, Ordering::SeqCst);
            let refused = frame::header_only(&Response::Skipped { id });
            if end.send(&refused).is_err() {
                return;
            }
            continue;
        }
        let output = |payload: &[u8]| {
            let mut out = payload.to_vec();
            out.extend_from_slice(format!("@{n}").as_bytes());
            frame::seal(out, &Response::Output { id, fds: 0 })
        };
        let answer = match &frame[..len] {
            b"crash" => return fate.end(ExitStatus::from_raw(11)),
            b"hang" => {
                while next_frame(&mut end, fate).is_some() {}
                return;
            }
            b"garbage" => b"\x01\x02".to_vec(),
            b"tick" => {
                thread::sleep(Duration::from_micros(200));
                output(b"tick")
            }
            b"slow" => {
                thread::sleep(Duration::from_millis(100));
                output(b"slow")
            }
            payload => output(payload),
        };
        if end.send(&answer).is_err() {
            return;
        }
        if &frame[..len] == b"quit" {
            thread::sleep(Duration::from_millis(50));
            return fate.end(ExitStatus::from_raw(0));
        }
    }
}

/// One slot, its supervisor thread, and a scripted starter.
struct Slot {
    shared: Arc<Shared>,
    intake: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    events: Arc<Mutex<Vec<Event>>>,
    fates: Arc<Mutex<Vec<Arc<Fate>>>>,
}

impl Slot {
    /// A slot whose workers start as `starts` says, with the pool settings `tune` makes.
    fn new(starts: &[Start], tune: impl FnOnce(PoolBuilder) -> PoolBuilder) -> Slot {
        Slot::several(1, starts, tune)
    }

    /// `n` slots sharing one queue (a pool of `n`, as far as the slots can tell).
    fn several(n: usize, starts: &[Start], tune: impl FnOnce(PoolBuilder) -> PoolBuilder) -> Slot {
        let events = Arc::new(Mutex::new(Vec::new()));
        let listener = events.clone();
        let builder = Pool::builder().events(Events::to(move |e: &Event| {
            lock(&listener).push(e.clone());
        }));
        let mut config = tune(builder).into_config();
        config.workers = n;
        let fates = Arc::new(Mutex::new(Vec::new()));
        let starter = Scripted {
            starts: Mutex::new(starts.iter().copied().collect()),
            fates: fates.clone(),
        };
        let (intake, queue) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared::new(config, Box::new(starter), queue));
        let threads = (0..n)
            .map(|slot| Supervisor::spawn(shared.clone(), slot).unwrap())
            .collect();
        Slot {
            shared,
            intake: Some(intake),
            threads,
            events,
            fates,
        }
    }

    /// Queues a task whose payload is `payload`, with the pool's options.
    fn submit(&self, payload: &str) -> Arc<Ticket> {
        self.submit_with(payload, self.shared.config.job_options())
    }

    /// Queues a task whose payload is `payload`, with options of its own.
    fn submit_with(&self, payload: &str, options: JobOptions) -> Arc<Ticket> {
        let id = self.shared.new_id();
        let run = Request::Run {
            id,
            task: "scripted".to_owned(),
            types: 0,
            fds: 0,
        };
        let bytes = frame::seal(payload.as_bytes().to_vec(), &run);
        let ticket = Arc::new(Ticket::new(None));
        let job = Job {
            id,
            attempts: 0,
            options,
            ticket: ticket.clone(),
            work: Work::One(Encoded {
                bytes,
                fds: Vec::new(),
            }),
            types: TaskTypes::pair::<(), ()>(),
            name: "scripted",
        };
        self.intake.as_ref().unwrap().send(job).unwrap();
        ticket
    }

    /// Jobs refused by all workers so far, having been taken back.
    fn refused(&self) -> usize {
        lock(&self.fates)
            .iter()
            .map(|f| f.refused.load(Ordering::SeqCst))
            .sum()
    }

    /// The signals worker `n` got.
    fn signals(&self, n: usize) -> Vec<&'static str> {
        lock(&self.fates)[n].signals()
    }

    /// Closes the queue, waits for the slot to end, and returns the events it told, as
    /// lines (pids as `w0`, `w1`… in the order the workers started).
    fn close(mut self) -> Vec<String> {
        drop(self.intake.take());
        for thread in self.threads.drain(..) {
            thread.join().unwrap();
        }
        self.shared.reaper.finish(false);
        let events = lock(&self.events);
        events.iter().map(line).collect()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.set_terminating();
        drop(self.intake.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// An event as a line: `w0 started`, `w0 runs 1`, `w0 finished 1: ok`,
/// `w0 exited: FailedStart`, with the cause's or the error's kind only.
fn line(event: &Event) -> String {
    let name = |pid: u32| format!("w{}", pid - 900_000_000);
    let kind = |e: &TaskError| {
        let debug = format!("{e:?}");
        debug
            .split([' ', '(', '{'])
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    match event {
        Event::WorkerStarted { pid, .. } => format!("{} started", name(*pid)),
        Event::JobStarted { pid, tasks, .. } => format!("{} runs {tasks}", name(*pid)),
        Event::JobFinished {
            pid,
            tasks,
            outcome,
            ..
        } => {
            let on = pid.map_or("-".to_owned(), name);
            let outcome = outcome.as_ref().map_or_else(kind, |()| "ok".to_owned());
            format!("{on} finished {tasks}: {outcome}")
        }
        Event::WorkerExited { pid, cause, .. } => {
            let cause = match cause {
                ExitCause::Lost(e) => format!("lost, {}", kind(e)),
                ExitCause::FailedStart(_) => "failed start".to_owned(),
                other => format!("{other:?}"),
            };
            format!("{} exited: {cause}", name(*pid))
        }
    }
}

fn output(ticket: &Ticket) -> Result<String, TaskError> {
    ticket
        .wait()
        .map(|out| String::from_utf8(out.bytes).unwrap())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_crash_fails_the_running_task_alone_and_the_next_worker_runs_the_rest() {
    let slot = Slot::new(&[], |b| b);
    assert_eq!(output(&slot.submit("a")), Ok("a@0".to_owned()));
    let crash = slot.submit("crash");
    let after = slot.submit("b");
    assert_eq!(output(&crash).unwrap_err().signal(), Some(11));
    assert_eq!(output(&after), Ok("b@1".to_owned()));
    assert_eq!(
        slot.close(),
        [
            "w0 started",
            "w0 runs 1",
            "w0 finished 1: ok",
            "w0 runs 1",
            "w0 exited: lost, Signaled",
            "w0 finished 1: Signaled",
            "w1 started",
            "w1 runs 1",
            "w1 finished 1: ok",
            "w1 exited: PoolClosed",
        ]
    );
}

#[test]
fn a_worker_that_ends_while_idle_costs_no_task() {
    let slot = Slot::new(&[], |b| b.retries(0));
    assert_eq!(output(&slot.submit("quit")), Ok("quit@0".to_owned()));
    // Long enough for it to end and its slot to notice, idle.
    thread::sleep(Duration::from_millis(200));
    assert_eq!(output(&slot.submit("a")), Ok("a@1".to_owned()));
    let lines = slot.close();
    assert!(
        lines.contains(&"w0 exited: DiedIdle".to_owned()),
        "{lines:?}"
    );
}

#[test]
fn a_worker_never_ready_fails_its_start_until_the_slot_gives_up() {
    let slot = Slot::new(&[Start::Silent, Start::Dies], |b| {
        b.start_timeout(Duration::from_millis(100))
            .max_start_failures(2)
    });
    let task = slot.submit("a");
    assert!(
        matches!(output(&task), Err(TaskError::WorkerStart { ref message })
            if message.contains("exited with code 3")),
        "{:?}",
        output(&task)
    );
    // The silent one was killed at its deadline; the group is killed before the reap.
    assert_eq!(slot.signals(0), ["SIGKILL"]);
    let lines = slot.close();
    assert_eq!(
        lines,
        [
            "w0 started",
            "w0 exited: failed start",
            "w1 started",
            "w1 exited: failed start",
            "- finished 1: WorkerStart",
        ]
    );
}

#[test]
fn a_frame_that_breaks_the_protocol_costs_the_worker_not_the_pool() {
    let slot = Slot::new(&[], |b| b);
    let bad = slot.submit("garbage");
    assert!(
        matches!(output(&bad), Err(TaskError::Protocol { .. })),
        "{:?}",
        output(&bad)
    );
    assert_eq!(slot.signals(0).first(), Some(&"SIGKILL"));
    assert_eq!(output(&slot.submit("a")), Ok("a@1".to_owned()));
}

#[test]
fn a_task_past_its_timeout_is_asked_to_stop_then_replaced() {
    let slot = Slot::new(&[], |b| b.timeout(Duration::from_millis(50)));
    let hung = slot.submit("hang");
    let after = slot.submit("a");
    assert!(
        matches!(output(&hung), Err(TaskError::TimedOut { .. })),
        "{:?}",
        output(&hung)
    );
    assert_eq!(slot.signals(0).first(), Some(&"SIGTERM"));
    assert_eq!(output(&after), Ok("a@1".to_owned()));
}

/// A job's own timeout is the one that counts, and the one its error names: shorter
/// than the pool's, or where the pool has none.
#[test]
fn a_job_is_timed_by_its_own_limit() {
    let own = Duration::from_millis(50);
    for pool in [None, Some(Duration::from_secs(30))] {
        let slot = Slot::new(&[], |b| match pool {
            Some(timeout) => b.timeout(timeout),
            None => b,
        });
        let options = JobOptions {
            timeout: Some(own),
            retries: 0,
        };
        let hung = slot.submit_with("hang", options);
        match output(&hung) {
            Err(TaskError::TimedOut { after, .. }) => assert_eq!(after, own),
            other => panic!("{other:?}"),
        }
        assert_eq!(slot.signals(0).first(), Some(&"SIGTERM"));
    }
}

/// A job without a timeout runs past the pool's, and the next job is timed by the
/// pool's again.
#[test]
fn a_job_without_a_timeout_outlives_the_pools() {
    let slot = Slot::new(&[], |b| b.timeout(Duration::from_millis(30)));
    let free = JobOptions {
        timeout: None,
        retries: 0,
    };
    assert_eq!(
        output(&slot.submit_with("slow", free)),
        Ok("slow@0".to_owned())
    );
    assert!(matches!(
        output(&slot.submit("slow")),
        Err(TaskError::TimedOut { .. })
    ));
}

/// Quick tasks so the workers' pipelines fill (their jobs take microseconds).
fn warm(slots: &Slot) {
    let warm: Vec<_> = (0..50).map(|_| slots.submit("ok")).collect();
    for ticket in warm {
        assert!(output(&ticket).is_ok());
    }
}

#[test]
fn jobs_queued_behind_a_hung_task_are_taken_back_for_the_other_worker() {
    let slots = Slot::several(2, &[], |b| b.timeout(Duration::from_secs(5)));
    warm(&slots);
    // Tasks of 200 µs: a few ride behind each running one, and the worker free of the
    // hung one cannot run them all before the hung one's slot looks for more.
    let hung = slots.submit("hang");
    let quick: Vec<_> = (0..300).map(|_| slots.submit("tick")).collect();
    for ticket in &quick {
        assert!(output(ticket).is_ok());
    }
    // Every quick task had its outcome while the hung one still ran.
    assert!(!hung.is_done());
    drop(slots);
    assert!(matches!(hung.wait(), Err(TaskError::PoolClosed)));
}

#[test]
fn a_slow_task_s_worker_refuses_what_was_taken_back_then_serves_on() {
    let slots = Slot::several(2, &[], |b| b);
    let mut refused = 0;
    for _ in 0..20 {
        warm(&slots);
        let slow = slots.submit("slow");
        let quick: Vec<_> = (0..300).map(|_| slots.submit("ok")).collect();
        for ticket in &quick {
            assert!(output(ticket).is_ok());
        }
        assert!(output(&slow).is_ok());
        refused = slots.refused();
        if refused > 0 {
            break;
        }
    }
    assert!(refused > 0, "no job was ever queued behind the slow one");
    // The refusals were read, and both workers serve on, no task lost or run twice.
    warm(&slots);
    let lines = slots.close();
    assert!(
        lines.iter().all(|l| !l.contains("exited: lost")),
        "{lines:?}"
    );
}
