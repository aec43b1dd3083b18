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

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use super::mode::{OutputLine, OutputMode, OutputSink, OutputStream};
use crate::sys::{self, Nonblocking};

/// How many stderr lines a crash report keeps.
const TAIL_LINES: usize = 20;
/// Longest line kept in the tail, in bytes; the rest of a longer line is dropped.
const TAIL_LINE_BYTES: usize = 1000;
/// Longest captured line handed over in one piece.
const CAPTURED_LINE_BYTES: usize = 64 * 1024;

/// What a pipe holds before its writer blocks (Linux's default).
const PIPE_BYTES: usize = 64 * 1024;

/// The read end of a worker's pipe.
pub(crate) type Pipe = OwnedFd;

/// Where the bytes of one pipe go, besides the tail.
pub(crate) enum Sink {
    /// Copied to the parent's own stderr.
    ParentStderr,
    /// Dropped.
    Discard,
    /// Split into lines for the user's function.
    Lines {
        sink: OutputSink,
        worker: u32,
        stream: OutputStream,
        partial: Vec<u8>,
    },
}

impl Sink {
    /// The sink for `worker`'s `stream` under the pool's setting for it. An inherited
    /// stdout never reaches the parent (the worker writes to the parent's own stdout).
    pub(crate) fn new(stdio: &OutputMode, worker: u32, stream: OutputStream) -> Sink {
        match stdio {
            OutputMode::Inherit if stream == OutputStream::Stderr => Sink::ParentStderr,
            OutputMode::Capture(sink) => Sink::Lines {
                sink: sink.clone(),
                worker,
                stream,
                partial: Vec::new(),
            },
            _ => Sink::Discard,
        }
    }

    fn is_capture(&self) -> bool {
        matches!(self, Sink::Lines { .. })
    }

    fn write(&mut self, bytes: &[u8]) {
        match self {
            Sink::ParentStderr => {
                let _ = io::stderr().write_all(bytes);
            }
            Sink::Discard => {}
            Sink::Lines {
                sink,
                worker,
                stream,
                partial,
            } => {
                for &b in bytes {
                    if b != b'\n' {
                        partial.push(b);
                    }
                    if b == b'\n' || partial.len() == CAPTURED_LINE_BYTES {
                        deliver(sink, *worker, *stream, partial);
                    }
                }
            }
        }
    }

    /// At end-of-file: a last line without a newline is still a line.
    fn finish(&mut self) {
        if let Sink::Lines {
            sink,
            worker,
            stream,
            partial,
        } = self
        {
            if !partial.is_empty() {
                deliver(sink, *worker, *stream, partial);
            }
        }
    }
}

/// Hands one line to the user's function. A panic there costs that line, not the
/// reader: a reader that stopped would leave the worker blocked on a full pipe.
fn deliver(sink: &OutputSink, worker: u32, stream: OutputStream, partial: &mut Vec<u8>) {
    let line = OutputLine {
        worker,
        stream,
        text: String::from_utf8_lossy(partial).into_owned(),
    };
    partial.clear();
    let _ = panic::catch_unwind(AssertUnwindSafe(|| (sink.0)(line)));
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

/// A pipe being read, where its bytes go, and the reader that keeps its tail. Dropped
/// (at end-of-file, or by a panic in the thread reading it), it closes the pipe and then
/// tells the reader, so no reader waits for a pipe nobody reads.
struct Watched {
    pipe: Option<Pipe>,
    sink: Sink,
    reader: OutputReader,
}

impl Watched {
    /// One read: `false` at end-of-file (or an error other than an interruption or
    /// an empty non-blocking pipe).
    fn read_some(&mut self, buf: &mut [u8]) -> bool {
        self.read_once(buf) != Read::Ended
    }

    fn read_once(&mut self, buf: &mut [u8]) -> Read {
        let Some(pipe) = &self.pipe else {
            return Read::Ended;
        };
        match sys::read_nonblocking(pipe.as_fd(), buf) {
            Nonblocking::Ended => Read::Ended,
            Nonblocking::Empty => Read::Empty,
            Nonblocking::Bytes(0) => Read::Bytes,
            Nonblocking::Bytes(n) => {
                self.sink.write(&buf[..n]);
                self.reader.lock().push(&buf[..n]);
                Read::Bytes
            }
        }
    }

    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.pipe.as_ref().map(AsFd::as_fd)
    }
}

/// What one read of a pipe found.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// Bytes (or an interruption): read again.
    Bytes,
    /// Nothing yet: the pipe is empty and still open for writing.
    Empty,
    /// End-of-file, or an error that ends the pipe.
    Ended,
}

impl Drop for Watched {
    fn drop(&mut self) {
        // The pipe is closed before the reader says it is done, so that a caller
        // waiting for that (`wait_done`) finds the descriptor gone too.
        drop(self.pipe.take());
        self.sink.finish();
        self.reader.close();
    }
}

/// The process's one thread for pipes that are not captured: a `poll` over all of them
/// and a wake-up pipe. It starts with the first pipe and ends when the last one ends;
/// while it runs, the wake-up pipe's write end is here.
struct Poller {
    /// Set while the thread runs.
    wake: Option<OwnedFd>,
    /// Pipes handed over and not yet taken by the thread.
    added: Vec<Watched>,
}

static POLLER: Mutex<Poller> = Mutex::new(Poller {
    wake: None,
    added: Vec::new(),
});

impl Poller {
    fn lock() -> MutexGuard<'static, Poller> {
        POLLER.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `watched` to the thread, starting it if none runs.
    fn watch(watched: Watched) {
        // Read only when poll says so, and never wait in a read.
        if let Some(fd) = watched.fd() {
            let _ = sys::set_nonblocking(fd);
        }
        let mut poller = Poller::lock();
        poller.added.push(watched);
        if let Some(wake) = &poller.wake {
            // A full wake-up pipe already has the thread's attention.
            let _ = sys::write_nonblocking(wake.as_fd(), &[1]);
            return;
        }
        let started = sys::nonblocking_pipe().and_then(|(wake_rx, wake_tx)| {
            thread::Builder::new()
                .name("procpool-output".into())
                .stack_size(64 * 1024)
                .spawn(move || Poller::run(wake_rx))?;
            Ok(wake_tx)
        });
        match started {
            Ok(wake_tx) => poller.wake = Some(wake_tx),
            // No thread: nothing will read these pipes; their readers say so.
            Err(_) => poller.added.clear(),
        }
    }

    fn run(wake_rx: OwnedFd) {
        let mut watched: Vec<Watched> = Vec::new();
        let served =
            panic::catch_unwind(AssertUnwindSafe(|| Poller::serve(&wake_rx, &mut watched)));
        let ended = match served {
            Ok(ended) => ended,
            Err(_) => {
                // A bug: rather than leave readers waiting, end every pipe, and let
                // the next one start a new thread.
                let mut poller = Poller::lock();
                poller.wake = None;
                watched.append(&mut poller.added);
                watched
            }
        };
        drop(wake_rx);
        drop(ended);
    }

    /// The poll loop, until the last pipe ends: returns the pipes that ended last
    /// (their readers not told yet), once the wake-up pipe is let go.
    fn serve(wake_rx: &OwnedFd, watched: &mut Vec<Watched>) -> Vec<Watched> {
        let mut buf = [0u8; 8192];
        loop {
            watched.append(&mut Poller::lock().added);
            let polled = {
                let mut fds = vec![wake_rx.as_fd()];
                // Every watched pipe is open: it is closed only when dropped.
                fds.extend(watched.iter().filter_map(Watched::fd));
                crate::sys::wait_readable(&fds)
            };
            let ready = polled.unwrap_or_else(|_| {
                // Out of memory for the poll, say: try every pipe (they do not block)
                // after a pause, rather than spin.
                thread::sleep(Duration::from_millis(10));
                vec![true; watched.len() + 1]
            });
            if ready[0] {
                while matches!(
                    sys::read_nonblocking(wake_rx.as_fd(), &mut buf),
                    Nonblocking::Bytes(1..)
                ) {}
            }
            // Read each ready pipe once; take out those that ended.
            let mut open = Vec::with_capacity(watched.len());
            let mut ended = Vec::new();
            for (mut w, &is_ready) in watched.drain(..).zip(&ready[1..]) {
                if !is_ready || w.read_some(&mut buf) {
                    open.push(w);
                } else {
                    ended.push(w);
                }
            }
            *watched = open;
            if watched.is_empty() && !ended.is_empty() {
                let mut poller = Poller::lock();
                if poller.added.is_empty() {
                    // The last pipe: the thread ends, and its wake-up pipe is closed
                    // before the last readers say they are done, so that no
                    // descriptor of ours outlives the pipes it served.
                    poller.wake = None;
                    return ended;
                }
            }
            // Dropped: each closes its pipe and tells its reader.
            drop(ended);
        }
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
    pub(crate) fn later(pipe: Option<Pipe>, sink: Sink) -> OutputReader {
        let reader = OutputReader {
            capturing: sink.is_capture(),
            ..OutputReader::default()
        };
        match pipe {
            Some(pipe) => *reader.waiting() = Waiting(Some((pipe, sink))),
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
            reader: self.clone(),
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
            reader: self.clone(),
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
                while watched.read_some(&mut buf) {}
                // Dropped: closes the pipe and tells the reader.
                drop(watched);
            });
    }

    fn lock(&self) -> MutexGuard<'_, Tail> {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self) {
        let mut tail = self.lock();
        if !tail.partial.is_empty() {
            tail.finish_line();
        }
        tail.closed = true;
        self.shared.1.notify_all();
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
    use super::*;

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

    /// Uncaptured pipes are read by the process's one poll thread, several at once, each
    /// to its end.
    #[test]
    fn the_poll_thread_reads_every_pipe_to_its_end() {
        let mut writers = Vec::new();
        let readers: Vec<OutputReader> = (0..3)
            .map(|_| {
                let (reader, writer) = io::pipe().unwrap();
                writers.push(writer);
                OutputReader::start(Some(reader.into()), Sink::Discard)
            })
            .collect();
        for (i, writer) in writers.iter_mut().enumerate() {
            writeln!(writer, "pipe {i} line 1").unwrap();
        }
        for (i, mut writer) in writers.into_iter().enumerate() {
            write!(writer, "pipe {i} last").unwrap();
        }
        for (i, reader) in readers.iter().enumerate() {
            assert_eq!(
                reader.lines(Duration::from_secs(5)),
                [format!("pipe {i} line 1"), format!("pipe {i} last")]
            );
            assert!(reader.is_done());
        }
    }

    fn capture(stream: OutputStream) -> (Sink, Arc<Mutex<Vec<OutputLine>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let into = lines.clone();
        let OutputMode::Capture(sink) = OutputMode::capture(move |l| into.lock().unwrap().push(l))
        else {
            unreachable!()
        };
        let sink = Sink::Lines {
            sink,
            worker: 7,
            stream,
            partial: Vec::new(),
        };
        (sink, lines)
    }

    #[test]
    fn captured_lines_are_split_at_newlines_and_at_the_size_cap() {
        let (mut sink, lines) = capture(OutputStream::Stdout);
        sink.write(b"one\ntw");
        sink.write(b"o\n");
        sink.write(&vec![b'x'; CAPTURED_LINE_BYTES + 10]);
        sink.write(b"\nlast, no newline");
        sink.finish();
        let lines = lines.lock().unwrap();
        let texts: Vec<usize> = lines.iter().map(|l| l.text.len()).collect();
        assert_eq!(texts, [3, 3, CAPTURED_LINE_BYTES, 10, 16]);
        assert_eq!(lines[1].text, "two");
        assert_eq!(lines[4].text, "last, no newline");
        assert!(lines
            .iter()
            .all(|l| l.worker == 7 && l.stream == OutputStream::Stdout));
    }

    #[test]
    fn a_panicking_sink_loses_one_line_not_the_rest() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let stdio = OutputMode::capture(move |l: OutputLine| {
            assert_ne!(l.text, "boom", "the sink panics on this line");
            into.lock().unwrap().push(l.text);
        });
        let mut sink = Sink::new(&stdio, 1, OutputStream::Stderr);
        sink.write(b"a\nboom\nb\n");
        assert_eq!(*seen.lock().unwrap(), ["a", "b"]);
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
