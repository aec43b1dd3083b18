//! A worker's stdout and stderr pipes as the parent reads them.
//!
//! An [`OutputReader`] reads one pipe until end-of-file. For stderr it keeps the last
//! lines that crash reports quote (and the first line, which says why a start failed).
//! Every byte then goes where the pool's [`OutputMode`] says: to the parent's own stderr,
//! nowhere, or line by line to the user's function ([`OutputMode::capture`]).
//!
//! Pipes whose bytes go to the parent's stderr or nowhere are all read by one thread
//! of the process, `procpool-output`, which polls them (see [`Poller`]): a worker's
//! start then starts no thread for its output. A captured pipe gets a thread of its
//! own, so that a slow user function holds up no other worker. A pipe whose reading
//! has not begun when its worker is reaped is read to its end by the thread that
//! drops the worker ([`OutputReader::finish_ended`]).

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

#[cfg(doc)]
use super::mode::OutputMode;
use super::poller::Poller;
pub(crate) use super::sink::Sink;
use super::tail::{self, Tail};
use super::watched::{Read, Watched};

/// What a pipe holds before its writer blocks (Linux's default).
const PIPE_BYTES: usize = 64 * 1024;

/// The read end of a worker's pipe.
pub(crate) type Pipe = OwnedFd;

/// Reads one of a worker's pipes until end-of-file: on a thread, or, once the worker
/// has been reaped, in place.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutputReader {
    shared: Arc<(Mutex<Tail>, Condvar)>,
    capturing: bool,
    /// A pipe not read yet (see [`later`](OutputReader::later)).
    waiting: Arc<Mutex<Waiting>>,
}

/// A pipe not read yet, and where its bytes are to go.
#[derive(Default)]
struct Waiting(Option<(Pipe, Sink)>);

impl fmt::Debug for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Waiting(pipe)"
        } else {
            "Waiting(none)"
        })
    }
}

impl OutputReader {
    /// Starts reading `pipe` (none: nothing to read) into the tail and `sink` now.
    #[cfg(test)]
    pub(crate) fn start(pipe: Option<Pipe>, sink: Sink) -> OutputReader {
        let reader = OutputReader::later(pipe, sink);
        reader.begin();
        reader
    }

    /// A reader of `pipe` (none: nothing to read) into the tail and `sink`, which
    /// starts reading with [`begin`](OutputReader::begin), or when the tail or the lines
    /// are asked for: a new worker's start then wakes no
    /// reading thread while the pool starts (the pipe holds 64 KiB meanwhile).
    pub(crate) fn later(pipe: Option<Pipe>, mut sink: Sink) -> OutputReader {
        let reader = OutputReader {
            capturing: sink.is_capture(),
            ..OutputReader::default()
        };
        match pipe {
            Some(pipe) => {
                // Every read of it is non-blocking from now on, wherever it is read, so
                // the sink can tell which task wrote each line.
                if crate::sys::set_nonblocking(pipe.as_fd()).is_ok() {
                    sink.follow(pipe.as_fd());
                }
                *reader.waiting() = Waiting(Some((pipe, sink)));
            }
            None => reader.close(),
        }
        reader
    }

    /// Starts reading a pipe that waits (see [`later`](OutputReader::later)).
    pub(crate) fn begin(&self) {
        let waiting = self.waiting().0.take();
        if let Some((pipe, sink)) = waiting {
            self.spawn(pipe, sink);
        }
    }

    /// Whether its bytes go to the user's function (a thread of its own reads them).
    pub(crate) fn is_capturing(&self) -> bool {
        self.capturing
    }

    /// Whether the reader has not begun and its pipe holds bytes.
    pub(crate) fn holds_bytes(&self) -> bool {
        self.waiting()
            .0
            .as_ref()
            .is_some_and(|(pipe, _)| crate::sys::bytes_unread(pipe.as_fd()).map_or(true, |n| n > 0))
    }

    /// Once its worker has been reaped: a reader that has not begun reads its pipe
    /// here and now, to end-of-file, which the pipe has reached if nothing the worker
    /// started still holds it open. Only a pipe still held (or a captured one, whose
    /// lines go to the user's function on a thread of their own) goes to a reading
    /// thread, as with [`begin`](OutputReader::begin). A worker that lived and ended
    /// between two of its slot's ticks then wakes no reading thread at all.
    pub(crate) fn finish_ended(&self) {
        let waiting = self.waiting().0.take();
        let Some((pipe, sink)) = waiting else {
            return;
        };
        if sink.is_capture() || crate::sys::set_nonblocking(pipe.as_fd()).is_err() {
            self.spawn(pipe, sink);
            return;
        }
        let mut watched = Watched {
            pipe: Some(pipe),
            sink,
            tail: self.shared.clone(),
        };
        let mut buf = [0u8; 8192];
        // A full pipe's worth, and as much again: a writer that escaped the worker's
        // group and goes on writing is left to the poll thread.
        for _ in 0..2 * PIPE_BYTES / buf.len() {
            match watched.read_once(&mut buf) {
                Read::Bytes => {}
                // Dropped: closes the pipe and tells the reader.
                Read::Ended => return,
                Read::Empty => break,
            }
        }
        Poller::watch(watched);
    }

    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self, pipe: Pipe, sink: Sink) {
        let mut watched = Watched {
            pipe: Some(pipe),
            sink,
            tail: self.shared.clone(),
        };
        if !watched.sink.is_capture() {
            Poller::watch(watched);
            return;
        }
        // If the thread does not start, the closure, and with it `watched`, is dropped,
        // which tells the reader.
        let _ = thread::Builder::new()
            .name("procpool-capture".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match watched.read_once(&mut buf) {
                        Read::Bytes => {}
                        // The pipe may be non-blocking (see `later`): wait for bytes.
                        Read::Empty => {
                            let waited = watched.fd().map(|fd| crate::sys::wait_readable(&[fd]));
                            if let Some(Err(_)) = waited {
                                // Out of memory for the poll, say: try again after a
                                // pause, rather than spin.
                                thread::sleep(Duration::from_millis(10));
                            }
                        }
                        Read::Ended => break,
                    }
                }
                // Dropped: closes the pipe and tells the reader.
                drop(watched);
            });
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Tail> {
        tail::lock(&self.shared)
    }

    pub(super) fn close(&self) {
        tail::close(&self.shared);
    }

    /// Waits up to `wait` for end-of-file.
    fn wait_closed(&self, wait: Duration) -> MutexGuard<'_, Tail> {
        let (lock, cond) = &*self.shared;
        let tail = lock.lock().unwrap_or_else(|e| e.into_inner());
        cond.wait_timeout_while(tail, wait, |t| !t.closed)
            .unwrap_or_else(|e| e.into_inner())
            .0
    }

    /// For a captured stream, waits up to `wait` until every line has been delivered.
    pub(crate) fn drain_capture(&self, wait: Duration) {
        if self.capturing {
            self.begin();
            drop(self.wait_closed(wait));
        }
    }

    /// Waits up to `wait` until the reader has read to end-of-file and closed its pipe.
    pub(crate) fn wait_done(&self, wait: Duration) {
        self.begin();
        drop(self.wait_closed(wait));
    }

    /// Whether the reader has closed its pipe.
    pub(crate) fn is_done(&self) -> bool {
        self.waiting().0.is_none() && self.lock().closed
    }

    /// Forgets the lines so far: a crash report then shows what the worker wrote while
    /// running the task that crashed, not the words of earlier tasks.
    ///
    /// A reader that has not begun and whose pipe is empty has nothing to forget and
    /// stays waiting. If its pipe holds bytes, it begins now: which task wrote them
    /// cannot be told (the worker may have gone on to the next task before this
    /// clear), so they stay, and a crash report may quote a little of the task before
    /// rather than lose the words of the task that crashed.
    pub(crate) fn clear(&self) {
        let holds_bytes = self.holds_bytes();
        {
            let mut tail = self.lock();
            tail.lines.clear();
            tail.first = None;
            tail.partial.clear();
            tail.allocation_failed = false;
        }
        // After the clear, so that none of those bytes is read before it.
        if holds_bytes {
            self.begin();
        }
    }

    /// Whether a line since the last clear said that an allocation failed (the Rust
    /// runtime's "memory allocation of N bytes failed"), however much followed it.
    pub(crate) fn saw_allocation_failure(&self) -> bool {
        self.begin();
        self.lock().allocation_failed
    }

    /// The first non-empty line since the last clear, once the pipe has drained
    /// (waiting up to `wait`).
    pub(crate) fn first_line(&self, wait: Duration) -> Option<String> {
        self.begin();
        self.wait_closed(wait).first.clone()
    }

    /// The last lines, waiting up to `wait` for end-of-file so that the dying words are
    /// in.
    pub(crate) fn lines(&self, wait: Duration) -> Vec<String> {
        self.begin();
        let tail = self.wait_closed(wait);
        let mut lines: Vec<String> = tail.lines.iter().cloned().collect();
        if !tail.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&tail.partial).into_owned());
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};

    use super::*;
    use crate::output::mode::OutputStream;
    use crate::output::sink::tests::capture;
    use crate::output::tail::TAIL_LINE_BYTES;

    /// The read end of a pipe that holds `bytes`, its write end closed.
    fn pipe_holding(bytes: &[u8]) -> Pipe {
        let (reader, mut writer) = io::pipe().unwrap();
        writer.write_all(bytes).unwrap();
        reader.into()
    }

    /// A reader made with `later` reads nothing until it begins, or until its lines
    /// are asked for.
    #[test]
    fn a_later_reader_reads_from_begin_or_when_its_lines_are_asked_for() {
        let (sink, lines) = capture(OutputStream::Stderr);
        let reader = OutputReader::later(Some(pipe_holding(b"one\ntwo")), sink);
        std::thread::sleep(Duration::from_millis(50));
        assert!(lines.lock().unwrap().is_empty(), "read before it began");
        assert!(!reader.is_done());
        assert_eq!(
            reader.first_line(Duration::from_secs(5)).as_deref(),
            Some("one")
        );
        assert_eq!(lines.lock().unwrap().len(), 2);
        assert!(reader.is_done());

        let (sink, lines) = capture(OutputStream::Stdout);
        let reader = OutputReader::later(Some(pipe_holding(b"three\n")), sink);
        reader.begin();
        reader.drain_capture(Duration::from_secs(5));
        assert_eq!(lines.lock().unwrap().len(), 1);
        assert!(reader.is_done());
    }

    /// A clear before the reader begins: with an empty pipe it keeps the reader
    /// waiting; with bytes in the pipe it begins reading and keeps them, since they may
    /// be the next task's.
    #[test]
    fn a_clear_before_the_reader_begins_loses_no_words() {
        let (sink, lines) = capture(OutputStream::Stderr);
        let (pipe, mut writer) = io::pipe().unwrap();
        let reader = OutputReader::later(Some(pipe.into()), sink);
        reader.clear();
        assert!(!reader.is_done(), "an empty pipe keeps it waiting");
        writer.write_all(b"written after\n").unwrap();
        reader.clear();
        assert!(reader.waiting().0.is_none(), "bytes in the pipe: it began");
        drop(writer);
        assert_eq!(reader.lines(Duration::from_secs(5)), ["written after"]);
        assert_eq!(lines.lock().unwrap().len(), 1);
    }

    /// An ended worker's pipe is read where `finish_ended` is called, to its end,
    /// with no thread; one still held open goes to the poll thread, which reads the
    /// rest; a captured one goes to a thread of its own.
    #[test]
    fn a_finished_reader_reads_an_ended_pipe_itself_and_hands_on_an_open_one() {
        // Longer than one read, so that the loop goes round.
        let long = "x".repeat(20_000);
        let reader = OutputReader::later(
            Some(pipe_holding(format!("{long}\nlast").as_bytes())),
            Sink::Discard,
        );
        reader.finish_ended();
        assert!(reader.is_done(), "read to its end in the call");
        assert_eq!(
            reader.lines(Duration::ZERO),
            [long[..TAIL_LINE_BYTES].to_owned(), "last".to_owned()]
        );

        let (pipe, mut writer) = io::pipe().unwrap();
        writer.write_all(b"before\n").unwrap();
        let reader = OutputReader::later(Some(pipe.into()), Sink::Discard);
        reader.finish_ended();
        assert!(!reader.is_done(), "a writer still holds the pipe");
        writer.write_all(b"after\n").unwrap();
        drop(writer);
        assert_eq!(reader.lines(Duration::from_secs(5)), ["before", "after"]);
        assert!(reader.is_done());

        let (sink, lines) = capture(OutputStream::Stderr);
        let reader = OutputReader::later(Some(pipe_holding(b"captured\n")), sink);
        reader.finish_ended();
        reader.drain_capture(Duration::from_secs(5));
        assert_eq!(lines.lock().unwrap().len(), 1);
        assert!(reader.is_done());
    }

    #[test]
    fn a_reader_delivers_everything_before_it_closes() {
        let (sink, lines) = capture(OutputStream::Stderr);
        let text = "first\nsecond\nthird";
        let reader = OutputReader::start(Some(pipe_holding(text.as_bytes())), sink);
        reader.drain_capture(Duration::from_secs(5));
        assert_eq!(lines.lock().unwrap().len(), 3);
        assert_eq!(reader.first_line(Duration::ZERO).as_deref(), Some("first"));
        assert_eq!(reader.lines(Duration::ZERO), ["first", "second", "third"]);
    }
}
