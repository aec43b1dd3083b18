//! One worker process as the parent sees it: its pid and process group, its stderr
//! tail, and how it is stopped and reaped.
//!
//! How a child is signalled and reaped depends on who its parent is: an exec'd worker is
//! our own child, a forked one is the fork server's. [`Reap`] is that small contract;
//! [`WorkerProcess`] keeps the rules on top of it (group kill only before the reap, one
//! reap, never a zombie) and is tested against a mock.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::sys::{self, Signal};

/// How many stderr lines a crash report keeps.
const TAIL_LINES: usize = 20;
/// Longest line kept, in bytes; the rest of a longer line is dropped.
const TAIL_LINE_BYTES: usize = 1000;
/// How often a stop polls for the exit.
const REAP_POLL: Duration = Duration::from_millis(2);

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
    stderr: StderrTail,
}

impl WorkerProcess {
    /// An exec'd child whose stderr is piped to us.
    pub(crate) fn exec(mut child: Child, forward_stderr: bool) -> WorkerProcess {
        let stderr = child.stderr.take();
        WorkerProcess::new(Box::new(child), stderr, forward_stderr)
    }

    /// Any child, with the read end of its stderr pipe.
    pub(crate) fn new(
        child: Box<dyn Reap>,
        stderr: Option<impl Read + Send + 'static>,
        forward_stderr: bool,
    ) -> WorkerProcess {
        WorkerProcess {
            child,
            status: None,
            stderr: StderrTail::start(stderr, forward_stderr),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.pid()
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
        self.stderr.lines(wait);
        self.stderr
            .shared
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first
            .clone()
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
    }
}

#[derive(Debug, Default)]
struct Tail {
    lines: VecDeque<String>,
    /// The first line since the last clear: when a worker dies at start-up it usually
    /// says why there, before any backtrace.
    first: Option<String>,
    partial: Vec<u8>,
    closed: bool,
    allocation_failed: bool,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.finish_line();
            } else if self.partial.len() < TAIL_LINE_BYTES {
                self.partial.push(b);
            }
        }
    }

    fn finish_line(&mut self) {
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        if line.starts_with("memory allocation of") {
            self.allocation_failed = true;
        }
        if self.first.is_none() && !line.trim().is_empty() {
            self.first = Some(line.clone());
        }
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

/// Reads a worker's stderr on a thread: keeps the last lines and, by default, passes
/// every byte on to the parent's own stderr.
#[derive(Debug, Clone, Default)]
struct StderrTail {
    shared: Arc<(Mutex<Tail>, Condvar)>,
}

impl StderrTail {
    fn start(pipe: Option<impl Read + Send + 'static>, forward: bool) -> StderrTail {
        let tail = StderrTail::default();
        let Some(mut pipe) = pipe else {
            tail.close();
            return tail;
        };
        let reader = tail.clone();
        let spawned = thread::Builder::new()
            .name("procpool-stderr".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if forward {
                                let _ = io::stderr().write_all(&buf[..n]);
                            }
                            reader
                                .shared
                                .0
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(&buf[..n]);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
                reader.close();
            });
        if spawned.is_err() {
            tail.close();
        }
        tail
    }

    fn close(&self) {
        let (lock, cond) = &*self.shared;
        let mut tail = lock.lock().unwrap_or_else(|e| e.into_inner());
        if !tail.partial.is_empty() {
            tail.finish_line();
        }
        tail.closed = true;
        cond.notify_all();
    }

    fn clear(&self) {
        let mut tail = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        tail.lines.clear();
        tail.first = None;
        tail.partial.clear();
        tail.allocation_failed = false;
    }

    fn saw_allocation_failure(&self) -> bool {
        self.shared
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allocation_failed
    }

    fn lines(&self, wait: Duration) -> Vec<String> {
        let (lock, cond) = &*self.shared;
        let tail = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (tail, _) = cond
            .wait_timeout_while(tail, wait, |t| !t.closed)
            .unwrap_or_else(|e| e.into_inner());
        let mut lines: Vec<String> = tail.lines.iter().cloned().collect();
        if !tail.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&tail.partial).into_owned());
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

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
        let process = WorkerProcess::new(Box::new(child), None::<io::Empty>, false);
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

    #[test]
    fn tail_keeps_the_last_lines_and_bounds_their_length() {
        let mut tail = Tail::default();
        for i in 0..50 {
            tail.push(format!("line {i}\n").as_bytes());
        }
        tail.push(&vec![b'x'; 5000]);
        tail.push(b"\n");
        assert_eq!(tail.lines.len(), TAIL_LINES);
        assert_eq!(tail.lines[0], "line 31");
        assert_eq!(tail.lines.back().unwrap().len(), TAIL_LINE_BYTES);
        assert!(!tail.allocation_failed);
    }

    #[test]
    fn an_allocation_failure_is_remembered_past_the_tail() {
        let mut tail = Tail::default();
        tail.push(b"memory allocation of 1073741824 bytes failed\n");
        for i in 0..100 {
            tail.push(format!("backtrace frame {i}\n").as_bytes());
        }
        assert!(tail.allocation_failed);
        assert!(tail.lines.iter().all(|l| !l.starts_with("memory")));
        assert_eq!(
            tail.first.as_deref(),
            Some("memory allocation of 1073741824 bytes failed")
        );
    }
}
