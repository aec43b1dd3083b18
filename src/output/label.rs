//! Whose a line of output is ([`Label`]): the process that wrote it (a worker or the
//! fork server, and its pid) and the task it ran when it wrote it ([`RunningTask`]),
//! and the prefix that says so on an inherited stream.
//!
//! The slot knows which task its worker runs; the pipe is read on another thread, and
//! later. So the slot tells the task to a [`RunningTask`], which, at each change of
//! task, notes how much each of the worker's pipes holds: those bytes were written
//! before the change, by the task before. The readers count the bytes they take out
//! (under the same lock, so no byte is counted on both sides of a change), and name
//! each line after the task whose bytes it begins in.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::sys::{self, Nonblocking};

/// The task a worker runs, as its slot tells it, and where each change of task falls
/// in the worker's pipes. Shared by the slot (one [`set`](RunningTask::set) per job,
/// a little more when the task changes) and the readers of the pipes (one lock per
/// read, and per line).
#[derive(Debug, Clone, Default)]
pub(crate) struct RunningTask(Arc<Mutex<Told>>);

#[derive(Debug, Default)]
struct Told {
    /// The task the worker runs, or ran last; `None` before its first.
    current: Option<&'static str>,
    /// The pipes followed, by the number [`RunningTask::follow`] gave them.
    pipes: Vec<Log>,
}

/// One followed pipe: how much has been read from it, and which earlier tasks wrote
/// the bytes it still held when the task changed.
#[derive(Debug)]
struct Log {
    /// A copy of the pipe's read end, to ask how much it holds.
    pipe: OwnedFd,
    /// Bytes read from the pipe so far.
    read: u64,
    /// `(end, task)`, oldest first: the pipe's bytes before offset `end` (counted from
    /// its first byte) were written by `task`, unless an entry before says otherwise.
    earlier: VecDeque<(u64, Option<&'static str>)>,
}

impl RunningTask {
    /// The worker has begun, or is about to begin, a task of the type `name`. If that
    /// is a change, what the followed pipes hold now was written before it.
    pub(crate) fn set(&self, name: &'static str) {
        let mut told = self.lock();
        if told.current == Some(name) {
            return;
        }
        let before = told.current;
        for log in &mut told.pipes {
            let held = sys::bytes_unread(log.pipe.as_fd()).unwrap_or(0) as u64;
            if held > 0 {
                log.earlier.push_back((log.read + held, before));
            }
        }
        told.current = Some(name);
    }

    /// The worker was sent a task of the type `name` before the parent knew its
    /// process: whatever it has written so far is that task's, as far as can be told.
    pub(crate) fn began_with(&self, name: &'static str) {
        let mut told = self.lock();
        told.current = Some(name);
        for log in &mut told.pipes {
            log.earlier.clear();
        }
    }

    /// The task type the worker runs, or ran last; `None` before its first task.
    #[cfg(test)]
    pub(crate) fn get(&self) -> Option<&'static str> {
        self.lock().current
    }

    /// Follows the non-blocking `pipe`, every read of which is to go through
    /// [`read`](RunningTask::read) from now on: returns its number, or `None` if it
    /// cannot be followed (no descriptor left for the copy), and its lines are named
    /// after the task that runs when they are read.
    pub(crate) fn follow(&self, pipe: BorrowedFd<'_>) -> Option<usize> {
        let copy = pipe.try_clone_to_owned().ok()?;
        let mut told = self.lock();
        told.pipes.push(Log {
            pipe: copy,
            read: 0,
            earlier: VecDeque::new(),
        });
        Some(told.pipes.len() - 1)
    }

    /// One read of followed pipe `pipe`, which must not block: counted under the lock
    /// that a change of task takes, so the count and what the pipe holds always add
    /// up to what was written.
    pub(crate) fn read(&self, pipe: usize, read: impl FnOnce() -> Nonblocking) -> Nonblocking {
        let mut told = self.lock();
        let got = read();
        if let (Nonblocking::Bytes(n), Some(log)) = (&got, told.pipes.get_mut(pipe)) {
            log.read += *n as u64;
        }
        got
    }

    /// The task that wrote the byte at `offset` of followed pipe `pipe` (`None`: a pipe
    /// not followed, whose bytes are named after the task now). Offsets are asked in
    /// order: what lies before `offset` is forgotten.
    pub(crate) fn task_at(&self, pipe: Option<usize>, offset: u64) -> Option<&'static str> {
        let mut told = self.lock();
        let current = told.current;
        let Some(log) = pipe.and_then(|p| told.pipes.get_mut(p)) else {
            return current;
        };
        while log.earlier.front().is_some_and(|&(end, _)| end <= offset) {
            log.earlier.pop_front();
        }
        log.earlier.front().map_or(current, |&(_, task)| task)
    }

    fn lock(&self) -> MutexGuard<'_, Told> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What kind of process wrote a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Writer {
    #[default]
    Worker,
    ForkServer,
}

/// Whose lines a pipe carries: the process, and the task it runs.
#[derive(Debug, Clone)]
pub(crate) struct Label {
    pub(crate) writer: Writer,
    pub(crate) pid: u32,
    pub(crate) task: RunningTask,
}

#[cfg(test)]
impl Label {
    /// The lines of worker `pid`, whose task is told through `task`.
    pub(crate) fn worker(pid: u32, task: RunningTask) -> Label {
        Label {
            writer: Writer::Worker,
            pid,
            task,
        }
    }
}

/// The prefix of a line of `writer` `pid` written while (as far as the parent can
/// tell) it ran a task of the type `task`: `[worker 4242 demo::parse] `, or
/// `[worker 4242] ` before its first task, `[fork server 4242] ` for the fork server.
/// Brackets and the word make it plain that the line is not the parent's own; the
/// pid and the name are what one greps for.
pub(crate) fn prefix(writer: Writer, pid: u32, task: Option<&str>) -> String {
    let who = match writer {
        Writer::Worker => "worker",
        Writer::ForkServer => "fork server",
    };
    match task {
        Some(task) => format!("[{who} {pid} {task}] "),
        None => format!("[{who} {pid}] "),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};

    use super::*;

    /// A non-blocking pipe followed by a new `RunningTask`: its read end, its write
    /// end, the `RunningTask`, and the pipe's number there.
    fn followed_pipe() -> (OwnedFd, io::PipeWriter, RunningTask, Option<usize>) {
        let (reader, writer) = io::pipe().unwrap();
        let reader = OwnedFd::from(reader);
        sys::set_nonblocking(reader.as_fd()).unwrap();
        let running = RunningTask::default();
        let pipe = running.follow(reader.as_fd());
        assert!(pipe.is_some());
        (reader, writer, running, pipe)
    }

    #[test]
    fn a_prefix_names_the_process_and_the_task_if_any() {
        assert_eq!(
            prefix(Writer::Worker, 4242, Some("demo::parse")),
            "[worker 4242 demo::parse] "
        );
        assert_eq!(prefix(Writer::Worker, 7, None), "[worker 7] ");
        assert_eq!(prefix(Writer::ForkServer, 9, None), "[fork server 9] ");
    }

    /// Bytes a task left in the pipe are its own, however late they are read; those
    /// written after the next task began are the next task's.
    #[test]
    fn bytes_in_the_pipe_at_a_change_of_task_belong_to_the_task_before() {
        let (reader, mut writer, running, pipe) = followed_pipe();
        writer.write_all(b"before any task;").unwrap();
        running.set("a::A");
        writer.write_all(b"A's;").unwrap();
        running.set("a::A");
        writer.write_all(b"A's too;").unwrap();
        running.set("b::B");
        writer.write_all(b"B's").unwrap();
        let mut buf = [0u8; 64];
        let Nonblocking::Bytes(n) = running.read(pipe.unwrap(), || {
            sys::read_nonblocking(reader.as_fd(), &mut buf)
        }) else {
            panic!("the pipe holds bytes");
        };
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        let at = |s: &str| running.task_at(pipe, text.find(s).unwrap() as u64);
        assert_eq!(at("before"), None);
        assert_eq!(at("A's;"), Some("a::A"));
        assert_eq!(at("A's too"), Some("a::A"));
        assert_eq!(at("B's"), Some("b::B"));
        assert_eq!(running.get(), Some("b::B"));
        // A pipe not followed is named after the task now.
        assert_eq!(running.task_at(None, 0), Some("b::B"));
    }

    /// A worker sent its first task before its process was known: what it wrote by
    /// then is that task's.
    #[test]
    fn a_task_sent_before_the_process_was_known_owns_what_came_before() {
        let (_reader, mut writer, running, pipe) = followed_pipe();
        writer.write_all(b"early").unwrap();
        running.began_with("a::A");
        running.set("b::B");
        assert_eq!(running.task_at(pipe, 0), Some("a::A"));
        assert_eq!(running.task_at(pipe, 5), Some("b::B"));
    }
}
