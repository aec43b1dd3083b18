//! One worker process as the parent sees it: its pid and process group, the readers of
//! its output pipes, and how it is stopped and reaped.
//!
//! How a child is signalled and reaped depends on who its parent is: an exec'd worker,
//! or one of the first workers forked from the pool's program, is our own child; one
//! forked by the fork server is the server's. [`Reap`] is that small contract;
//! [`WorkerProcess`] keeps the rules on top of it (group kill only before the reap, one
//! reap, never a zombie) and is tested against a mock.

use std::fmt;
use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use crate::output::mode::{OutputMode, OutputStream};
use crate::output::reader::{OutputReader, Pipe, Sink};
use crate::sys::{self, Signal};

/// How often a stop polls for the exit.
const REAP_POLL: Duration = Duration::from_millis(2);
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
    status: Option<ExitStatus>,
    stderr: OutputReader,
    stdout: OutputReader,
}

/// The read ends of a new worker's pipes, and the pool's settings for its streams.
#[derive(Default)]
pub(crate) struct Pipes<'a> {
    pub(crate) stderr: Option<Pipe>,
    /// Only when stdout is captured.
    pub(crate) stdout: Option<Pipe>,
    pub(crate) stderr_to: Option<&'a OutputMode>,
    pub(crate) stdout_to: Option<&'a OutputMode>,
}

impl WorkerProcess {
    /// An exec'd child whose stderr (and stdout, when captured) is piped to us.
    pub(crate) fn exec(
        mut child: Child,
        stderr_to: &OutputMode,
        stdout_to: &OutputMode,
    ) -> WorkerProcess {
        let pipes = Pipes {
            stderr: child.stderr.take().map(Pipe::from),
            stdout: child.stdout.take().map(Pipe::from),
            stderr_to: Some(stderr_to),
            stdout_to: Some(stdout_to),
        };
        WorkerProcess::new(Box::new(child), pipes)
    }

    /// Any child, with the read ends of its pipes, which are read from
    /// [`start_output`](WorkerProcess::start_output) on (or when their lines are asked
    /// for, or the process is dropped).
    pub(crate) fn new(child: Box<dyn Reap>, pipes: Pipes<'_>) -> WorkerProcess {
        let pid = child.pid();
        let sink = |to: Option<&OutputMode>, stream| {
            Sink::new(to.unwrap_or(&OutputMode::Null), pid, stream)
        };
        let stderr_sink = sink(pipes.stderr_to, OutputStream::Stderr);
        let stderr = OutputReader::later(pipes.stderr, stderr_sink);
        WorkerProcess {
            status: None,
            stderr,
            stdout: OutputReader::later(pipes.stdout, sink(pipes.stdout_to, OutputStream::Stdout)),
            child,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Starts reading its output pipes, if not yet started. A new worker's pipes wait
    /// until its slot has a moment (its first tick, busy or idle), so that its start
    /// wakes no reading thread on the way to the first result.
    pub(crate) fn start_output(&self) {
        self.stderr.begin();
        self.stdout.begin();
    }

    /// Starts reading the output pipes that hold bytes: a retired worker's last
    /// words are read while it exits (its reaper calls this as it waits), and a
    /// worker that says nothing on its way out wakes no reading thread. `true` if it
    /// started one.
    pub(crate) fn start_output_written(&self) -> bool {
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
    /// its group is killed before the reap (see [`kill`](Self::kill)).
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() && self.child.has_exited() {
            self.kill();
        }
        self.status
    }

    /// Waits up to `grace` for the process to end by itself, then kills its group.
    pub(crate) fn wait_or_kill(&mut self, grace: Duration) -> ExitStatus {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                return status;
            }
            thread::sleep(REAP_POLL);
        }
        self.kill()
    }

    /// SIGTERM to the group, `grace` to go, then SIGKILL; reaped either way.
    pub(crate) fn terminate(&mut self, grace: Duration) -> ExitStatus {
        if self.status.is_none() {
            self.child.signal_group(sys::TERM);
        }
        self.wait_or_kill(grace)
    }

    /// SIGKILL to the whole group (grandchildren too), then reap.
    ///
    /// The group is signalled only while the leader is unreaped: until then its pid,
    /// which is the group id, cannot belong to anyone else. After the reap nothing is
    /// signalled again.
    pub(crate) fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        self.child.signal_group(sys::KILL);
        let status = self.child.reap();
        self.status = Some(status);
        status
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
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::sync::{Arc, Mutex};

    /// Records what a [`WorkerProcess`] asks of its child.
    #[derive(Debug)]
    struct Mock {
        exited: bool,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Reap for Mock {
        fn pid(&self) -> u32 {
            42
        }
        fn has_exited(&mut self) -> bool {
            self.exited
        }
        fn signal_group(&mut self, signal: Signal) {
            self.log.lock().unwrap().push(signal.as_str().to_owned());
        }
        fn reap(&mut self) -> ExitStatus {
            self.log.lock().unwrap().push("reap".to_owned());
            ExitStatus::from_raw(9)
        }
    }

    fn mock(exited: bool) -> (WorkerProcess, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let child = Mock {
            exited,
            log: log.clone(),
        };
        let process = WorkerProcess::new(Box::new(child), Pipes::default());
        (process, log)
    }

    #[test]
    fn the_group_is_killed_once_before_the_one_reap() {
        let (mut process, log) = mock(false);
        assert_eq!(process.try_wait(), None);
        assert_eq!(process.kill().signal(), Some(9));
        process.kill();
        process.terminate(Duration::ZERO);
        drop(process);
        assert_eq!(*log.lock().unwrap(), ["SIGKILL", "reap"]);
    }

    #[test]
    fn terminate_asks_politely_first() {
        let (mut process, log) = mock(false);
        process.terminate(Duration::from_millis(5));
        assert_eq!(*log.lock().unwrap(), ["SIGTERM", "SIGKILL", "reap"]);
    }

    #[test]
    fn an_ended_worker_has_its_group_killed_before_the_reap() {
        let (mut process, log) = mock(true);
        assert!(process.try_wait().is_some());
        assert!(process.try_wait().is_some());
        drop(process);
        assert_eq!(*log.lock().unwrap(), ["SIGKILL", "reap"]);
    }

    #[test]
    fn dropping_a_live_worker_kills_and_reaps_it() {
        let (process, log) = mock(false);
        drop(process);
        assert_eq!(*log.lock().unwrap(), ["SIGKILL", "reap"]);
    }
}
