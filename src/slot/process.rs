//! One worker process as the parent sees it: its pid and process group, the readers of
//! its output pipes, and how it is stopped and reaped.
//!
//! How a child is signalled and reaped depends on who its parent is: an exec'd worker,
//! or one of the first workers forked from the pool's program, is our own child; one
//! forked by the fork server is the server's. [`Reap`] is that small contract;
//! [`WorkerProcess`] keeps the rules on top of it (group kill only before the reap, one
//! reap, never a zombie) and is tested against a mock. Every way of stopping it (a
//! kill, a terminate, a wait after a crash, a retirement) is the one state machine of
//! [`stop`], whose steps it takes in [`advance`](WorkerProcess::advance).

use std::fmt;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use super::stop::{self, Progress, Seen, Step, Stop};
use crate::output::label::{Label, RunningTask, Writer};
use crate::output::mode::{OutputMode, OutputStream};
use crate::output::reader::{OutputReader, Pipe, Sink};
use crate::sys::{self, Signal};

/// How long dropping a worker waits for its captured output to be delivered (a process
/// the task left in the background may hold the pipe open for good). `join` waits for
/// the readers of all workers to close their pipes, with one deadline for all.
const CAPTURE_DRAIN: Duration = Duration::from_secs(1);

/// How the parent signals and reaps one kind of child process.
pub(crate) trait Reap: Send + fmt::Debug {
    fn pid(&self) -> u32;
    /// Whether the process has ended, without reaping it: until the reap its pid, which
    /// is also its process group id, cannot be reused.
    fn has_exited(&mut self) -> bool;
    /// Sends `signal` to the process's whole group. Never called after [`reap`](Self::reap).
    fn signal_group(&mut self, signal: Signal);
    /// Waits for the process to end, reaps it and returns how it ended.
    fn reap(&mut self) -> ExitStatus;
}

/// An exec'd worker is our own child.
impl Reap for Child {
    fn pid(&self) -> u32 {
        self.id()
    }

    fn has_exited(&mut self) -> bool {
        sys::has_exited(self.id())
    }

    fn signal_group(&mut self, signal: Signal) {
        let _ = sys::signal_group(self.id(), signal);
    }

    fn reap(&mut self) -> ExitStatus {
        self.wait().expect("waiting for our own child cannot fail")
    }
}

/// A live worker process. Dropping it kills and reaps it: no zombie, no orphan.
#[derive(Debug)]
pub(crate) struct WorkerProcess {
    child: Box<dyn Reap>,
    /// Where it is on its way out; every stop goes through [`stop::next`].
    stop: Stop,
    stderr: OutputReader,
    stdout: OutputReader,
    /// The task it runs, for the lines its output readers pass on.
    running: RunningTask,
}

/// The read ends of a new worker's pipes, and the pool's settings for its streams.
#[derive(Default)]
pub(crate) struct Pipes<'a> {
    pub(crate) stderr: Option<Pipe>,
    /// Only when stdout is captured.
    pub(crate) stdout: Option<Pipe>,
    pub(crate) stderr_to: Option<&'a OutputMode>,
    pub(crate) stdout_to: Option<&'a OutputMode>,
    /// What the process is, for the lines its output readers pass on.
    pub(crate) writer: Writer,
}

impl WorkerProcess {
    /// An exec'd child (a worker, or the fork server: `writer`) whose stderr (and
    /// stdout, when piped) is piped to us.
    pub(crate) fn exec(
        mut child: Child,
        writer: Writer,
        stderr_to: &OutputMode,
        stdout_to: &OutputMode,
    ) -> WorkerProcess {
        let pipes = Pipes {
            stderr: child.stderr.take().map(Pipe::from),
            stdout: child.stdout.take().map(Pipe::from),
            stderr_to: Some(stderr_to),
            stdout_to: Some(stdout_to),
            writer,
        };
        WorkerProcess::new(Box::new(child), pipes)
    }

    /// Any child, with the read ends of its pipes, which are read from
    /// [`start_output`](WorkerProcess::start_output) on (or when their lines are asked
    /// for, or the process is dropped).
    pub(crate) fn new(child: Box<dyn Reap>, pipes: Pipes<'_>) -> WorkerProcess {
        let running = RunningTask::default();
        let label = Label {
            writer: pipes.writer,
            pid: child.pid(),
            task: running.clone(),
        };
        let sink = |to: Option<&OutputMode>, stream| {
            Sink::new(to.unwrap_or(&OutputMode::Null), label.clone(), stream)
        };
        let stderr_sink = sink(pipes.stderr_to, OutputStream::Stderr);
        let stderr = OutputReader::later(pipes.stderr, stderr_sink);
        WorkerProcess {
            stop: Stop::Running,
            stderr,
            stdout: OutputReader::later(pipes.stdout, sink(pipes.stdout_to, OutputStream::Stdout)),
            running,
            child,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The process begins a task of the type `name`: the lines it writes from now on
    /// are its, as far as their prefix (or their captured [`OutputLine`]) tells.
    ///
    /// [`OutputLine`]: crate::OutputLine
    pub(crate) fn running(&self, name: &'static str) {
        self.running.set(name);
    }

    /// The process was sent a task of the type `name` before it was known: all it
    /// has written so far is that task's, as far as can be told.
    pub(crate) fn began_with(&self, name: &'static str) {
        self.running.began_with(name);
    }

    /// Starts reading its output pipes, if not yet started. A new worker's pipes wait
    /// until its slot has a moment (its first tick, busy or idle), so that its start
    /// wakes no reading thread on the way to the first result.
    pub(crate) fn start_output(&self) {
        self.stderr.begin();
        self.stdout.begin();
    }

    /// Starts reading the output pipes that hold bytes: a worker's last words are read
    /// while it exits (each look at a worker being stopped calls this, the reaper's
    /// included), and a worker that says nothing on its way out wakes no reading
    /// thread. `true` if it started one.
    fn start_output_written(&self) -> bool {
        let mut started = false;
        for reader in [&self.stderr, &self.stdout] {
            if reader.holds_bytes() {
                reader.begin();
                started = true;
            }
        }
        started
    }

    /// Starts reading its captured streams, which have threads of their own.
    pub(crate) fn start_captured_output(&self) {
        for reader in [&self.stderr, &self.stdout] {
            if reader.is_capturing() {
                reader.begin();
            }
        }
    }

    /// Its output readers, for the pool to wait on when it joins.
    pub(crate) fn readers(&self) -> [OutputReader; 2] {
        [self.stderr.clone(), self.stdout.clone()]
    }

    /// The exit status if the process has ended, without blocking. Whatever is left in
    /// its group is killed before the reap (see [`stop::next`]).
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        match self.advance(false) {
            Progress::Reaped(status) => Some(status),
            Progress::Waiting { .. } => None,
        }
    }

    /// Waits up to `grace` for the process to end by itself, then kills its group;
    /// reaped either way. A stop already under way keeps its deadline.
    pub(crate) fn wait_or_kill(&mut self, grace: Duration) -> ExitStatus {
        self.ask(grace);
        self.see_out(false)
    }

    /// SIGTERM to the group, `grace` to go, then SIGKILL; reaped either way.
    pub(crate) fn terminate(&mut self, grace: Duration) -> ExitStatus {
        self.send_term(grace);
        self.see_out(false)
    }

    /// SIGTERM to the group, unless it was sent already or the process is killed: it
    /// has `grace` from now to end.
    fn send_term(&mut self, grace: Duration) {
        if let Stop::Running | Stop::Asked { .. } = self.stop {
            self.child.signal_group(sys::TERM);
            self.stop = Stop::Terminated {
                deadline: Instant::now() + grace,
            };
        }
    }

    /// SIGKILL to the whole group (grandchildren too), then reap.
    ///
    /// The group is signalled only while the leader is unreaped: until then its pid,
    /// which is the group id, cannot belong to anyone else. After the reap nothing is
    /// signalled again.
    pub(crate) fn kill(&mut self) -> ExitStatus {
        self.see_out(true)
    }

    /// Notes that the process was asked to exit (its slot sent `Shutdown`): it has
    /// `grace` to do so, counted from now. Only a running process starts a stop here;
    /// one already on its way out keeps its course.
    pub(crate) fn ask(&mut self, grace: Duration) {
        if self.stop == Stop::Running {
            self.stop = Stop::Asked {
                deadline: Instant::now() + grace,
            };
        }
    }

    /// Takes every step of its stop that is due now ([`stop::next`] decides each):
    /// it kills and reaps what has ended or run out of time, and says what it waits for
    /// otherwise. `hurry` kills it now, grace or not.
    ///
    /// The reaper calls this once a round for each of its retirees; the slot's own
    /// waits call it until the process is reaped.
    pub(crate) fn advance(&mut self, hurry: bool) -> Progress {
        loop {
            match stop::next(self.stop, self.look(hurry)) {
                Step::Done(status) => return Progress::Reaped(status),
                Step::Wait { until } => return Progress::Waiting { until },
                Step::Kill => {
                    self.child.signal_group(sys::KILL);
                    self.stop = Stop::Killed;
                }
                Step::Reap => self.stop = Stop::Reaped(self.child.reap()),
            }
        }
    }

    /// What the next step of its stop rests on. Only what can change the step is looked
    /// at: nothing once it is killed, nor in a hurry (it is killed either way), and its
    /// pipes only while it is being stopped.
    fn look(&mut self, hurry: bool) -> Seen {
        let unreaped_and_unkilled = matches!(
            self.stop,
            Stop::Running | Stop::Asked { .. } | Stop::Terminated { .. }
        );
        let exited = unreaped_and_unkilled && !hurry && self.child.has_exited();
        let stopping = matches!(self.stop, Stop::Asked { .. } | Stop::Terminated { .. });
        // A worker held up by a full pipe is let go on: its last words are read as it
        // exits (a stop that reads nothing wakes no reading thread).
        let unblocked = stopping && !hurry && !exited && self.start_output_written();
        Seen {
            exited,
            unblocked,
            hurry,
            now: Instant::now(),
        }
    }

    /// Steps its stop until it is reaped, pausing in between.
    fn see_out(&mut self, hurry: bool) -> ExitStatus {
        loop {
            match self.advance(hurry) {
                Progress::Reaped(status) => return status,
                Progress::Waiting { until } => stop::pause(until),
            }
        }
    }

    /// The first non-empty stderr line since the last clear, once the pipe has drained
    /// (waiting up to `wait`).
    pub(crate) fn first_stderr_line(&self, wait: Duration) -> Option<String> {
        self.stderr.first_line(wait)
    }

    /// Forgets the stderr lines so far: a crash report then shows what the worker wrote
    /// while running the task that crashed, not the words of earlier tasks.
    pub(crate) fn clear_stderr_tail(&self) {
        self.stderr.clear();
    }

    /// Whether the worker's stderr said that an allocation failed (the Rust runtime's
    /// "memory allocation of N bytes failed"), however much it printed afterwards.
    pub(crate) fn saw_allocation_failure(&self) -> bool {
        self.stderr.saw_allocation_failure()
    }

    /// The last stderr lines, waiting up to `wait` for the pipe to reach end-of-file so
    /// that the dying words are in.
    pub(crate) fn stderr_tail(&self, wait: Duration) -> Vec<String> {
        self.stderr.lines(wait)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
        // What it wrote and nobody read yet still goes where the pool's settings say.
        self.stderr.finish_ended();
        self.stdout.finish_ended();
        self.stdout.drain_capture(CAPTURE_DRAIN);
        self.stderr.drain_capture(CAPTURE_DRAIN);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::io::{self, Write};
    use std::os::unix::process::ExitStatusExt;
    use std::sync::{Arc, Mutex};

    /// A mock child as its test sees it: what it has been asked, and whether it has
    /// ended.
    #[derive(Debug, Default)]
    pub(in crate::slot) struct Child {
        pub(in crate::slot) exited: bool,
        /// SIGTERM ends it.
        pub(in crate::slot) ends_on_term: bool,
        pub(in crate::slot) log: Vec<String>,
    }

    pub(in crate::slot) type Shared = Arc<Mutex<Child>>;

    /// Records what a [`WorkerProcess`] asks of its child.
    #[derive(Debug)]
    struct Mock(Shared);

    impl Reap for Mock {
        fn pid(&self) -> u32 {
            42
        }
        fn has_exited(&mut self) -> bool {
            self.0.lock().unwrap().exited
        }
        fn signal_group(&mut self, signal: Signal) {
            let mut child = self.0.lock().unwrap();
            child.log.push(signal.as_str().to_owned());
            child.exited |= signal == sys::KILL || (signal == sys::TERM && child.ends_on_term);
        }
        fn reap(&mut self) -> ExitStatus {
            self.0.lock().unwrap().log.push("reap".to_owned());
            ExitStatus::from_raw(9)
        }
    }

    /// A worker process over a mock child that is as `child` says.
    pub(in crate::slot) fn mock_with(child: Child, pipes: Pipes<'_>) -> (WorkerProcess, Shared) {
        let shared = Arc::new(Mutex::new(child));
        let process = WorkerProcess::new(Box::new(Mock(shared.clone())), pipes);
        (process, shared)
    }

    pub(in crate::slot) fn mock(exited: bool) -> (WorkerProcess, Shared) {
        let child = Child {
            exited,
            ..Child::default()
        };
        mock_with(child, Pipes::default())
    }

    pub(in crate::slot) fn log(shared: &Shared) -> Vec<String> {
        shared.lock().unwrap().log.clone()
    }

    #[test]
    fn the_group_is_killed_once_before_the_one_reap() {
        let (mut process, child) = mock(false);
        assert_eq!(process.try_wait(), None);
        assert_eq!(process.kill().signal(), Some(9));
        process.kill();
        process.terminate(Duration::ZERO);
        process.wait_or_kill(Duration::ZERO);
        assert!(process.try_wait().is_some());
        drop(process);
        assert_eq!(log(&child), ["SIGKILL", "reap"]);
    }

    #[test]
    fn terminate_asks_politely_first() {
        let (mut process, child) = mock(false);
        process.terminate(Duration::from_millis(5));
        assert_eq!(log(&child), ["SIGTERM", "SIGKILL", "reap"]);
    }

    #[test]
    fn an_ended_worker_has_its_group_killed_before_the_reap() {
        let (mut process, child) = mock(true);
        assert!(process.try_wait().is_some());
        assert!(process.try_wait().is_some());
        drop(process);
        assert_eq!(log(&child), ["SIGKILL", "reap"]);
    }

    #[test]
    fn dropping_a_live_worker_kills_and_reaps_it() {
        let (process, child) = mock(false);
        drop(process);
        assert_eq!(log(&child), ["SIGKILL", "reap"]);
    }

    /// Asked, waited for until its deadline, then SIGKILL and the reap.
    #[test]
    fn an_asked_worker_that_stays_is_killed_at_its_deadline() {
        let (mut process, child) = mock(false);
        let grace = Duration::from_millis(30);
        let start = Instant::now();
        process.ask(grace);
        let Progress::Waiting {
            until: Some(deadline),
        } = process.advance(false)
        else {
            panic!("not waiting for its deadline");
        };
        assert!(deadline >= start + grace);
        assert!(log(&child).is_empty(), "signalled in its grace");
        while process.try_wait().is_none() {
            stop::pause(Some(deadline));
        }
        assert!(start.elapsed() >= grace);
        assert_eq!(log(&child), ["SIGKILL", "reap"]);

        // The slot's blocking wait is the same stop.
        let (mut process, child) = mock(false);
        let start = Instant::now();
        process.wait_or_kill(grace);
        assert!(start.elapsed() >= grace);
        assert_eq!(log(&child), ["SIGKILL", "reap"]);
    }

    /// Asked, and gone before its deadline: reaped at the next look, with no wait for
    /// the deadline.
    #[test]
    fn an_asked_worker_that_ends_in_its_grace_is_reaped_at_the_next_look() {
        let (mut process, child) = mock(false);
        process.ask(Duration::from_secs(60));
        assert!(matches!(process.advance(false), Progress::Waiting { .. }));
        child.lock().unwrap().exited = true;
        assert!(matches!(process.advance(false), Progress::Reaped(_)));
        // What it left in its group is killed before the reap.
        assert_eq!(log(&child), ["SIGKILL", "reap"]);
    }

    /// SIGTERM, and it ends in its grace: reaped at once, not at the deadline. The
    /// SIGKILL that follows is for whatever it left in its group; the leader is gone.
    #[test]
    fn a_terminated_worker_that_ends_in_its_grace_is_reaped_at_once() {
        let child = Child {
            ends_on_term: true,
            ..Child::default()
        };
        let (mut process, child) = mock_with(child, Pipes::default());
        let start = Instant::now();
        process.terminate(Duration::from_secs(60));
        assert!(start.elapsed() < Duration::from_secs(30));
        assert_eq!(log(&child), ["SIGTERM", "SIGKILL", "reap"]);
    }

    /// In a hurry (the pool terminates), a worker in its grace is killed now.
    #[test]
    fn a_hurry_kills_a_worker_in_its_grace() {
        for terminated in [false, true] {
            let (mut process, child) = mock(false);
            let grace = Duration::from_secs(60);
            if terminated {
                process.send_term(grace);
            } else {
                process.ask(grace);
            }
            assert!(matches!(process.advance(false), Progress::Waiting { .. }));
            assert!(matches!(process.advance(true), Progress::Reaped(_)));
            let mut expected = vec!["SIGKILL", "reap"];
            if terminated {
                expected.insert(0, "SIGTERM");
            }
            assert_eq!(log(&child), expected);
        }
    }

    /// A worker whose output pipe gets its reader only after its deadline has one more
    /// poll to end by itself, then is killed.
    #[test]
    fn an_unblocked_worker_gets_one_more_poll() {
        let (reader, mut writer) = io::pipe().unwrap();
        writer.write_all(b"last words\n").unwrap();
        drop(writer);
        let pipes = Pipes {
            stderr: Some(reader.into()),
            ..Pipes::default()
        };
        let (mut process, child) = mock_with(Child::default(), pipes);
        process.ask(Duration::ZERO);
        let before = Instant::now();
        let Progress::Waiting { until: Some(until) } = process.advance(false) else {
            panic!("killed although its output was just unblocked");
        };
        assert!(until >= before + stop::POLL);
        assert!(log(&child).is_empty());
        assert!(matches!(process.advance(false), Progress::Reaped(_)));
        assert_eq!(log(&child), ["SIGKILL", "reap"]);
    }
}
