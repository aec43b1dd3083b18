//! Where the bytes of one of a worker's pipes go, besides the crash tail ([`Sink`]): to
//! the parent's own stream as they are or line by line with whose they are, nowhere,
//! or line by line to the user's function.

use std::io::{self, Write};
use std::os::fd::BorrowedFd;
use std::panic::{self, AssertUnwindSafe};

use super::label::{self, Label};
use super::mode::{OutputLine, OutputMode, OutputSink, OutputStream};
use crate::sys::Nonblocking;

/// Longest line handed on in one piece, captured or prefixed.
const LINE_BYTES: usize = 64 * 1024;

/// Where the bytes of one pipe go, besides the tail.
pub(crate) enum Sink {
    /// Copied to the parent's own stderr as they come.
    ParentStderr,
    /// Copied to the parent's own `to`, line by line, each prefixed with whose it is.
    Prefixed {
        to: OutputStream,
        lines: Lines,
        /// The last prefix made, and the task it names.
        prefix: Option<(Option<&'static str>, String)>,
    },
    /// Dropped.
    Discard,
    /// Split into lines for the user's function.
    Captured {
        sink: OutputSink,
        stream: OutputStream,
        lines: Lines,
    },
}

impl Sink {
    /// The sink for the `stream` of the process `label` names, under the pool's setting
    /// for it. An inherited stdout never reaches the parent (the worker writes to the
    /// parent's own stdout).
    pub(crate) fn new(mode: &OutputMode, label: Label, stream: OutputStream) -> Sink {
        let stderr = stream == OutputStream::Stderr;
        match mode {
            OutputMode::Raw if stderr => Sink::ParentStderr,
            OutputMode::Inherit if stderr => Sink::prefixed(stream, label),
            OutputMode::Prefixed => Sink::prefixed(stream, label),
            OutputMode::Capture(sink) => Sink::Captured {
                sink: sink.clone(),
                stream,
                lines: Lines::new(label),
            },
            _ => Sink::Discard,
        }
    }

    fn prefixed(to: OutputStream, label: Label) -> Sink {
        Sink::Prefixed {
            to,
            lines: Lines::new(label),
            prefix: None,
        }
    }

    pub(super) fn is_capture(&self) -> bool {
        matches!(self, Sink::Captured { .. })
    }

    /// Follows `pipe`, whose lines this sink names, to tell which task wrote each (see
    /// [`RunningTask`](super::label::RunningTask)): only a pipe every read of which
    /// goes through [`read`](Sink::read) and never blocks.
    pub(super) fn follow(&mut self, pipe: BorrowedFd<'_>) {
        if let Sink::Prefixed { lines, .. } | Sink::Captured { lines, .. } = self {
            lines.pipe = lines.label.task.follow(pipe);
        }
    }

    /// One read of the pipe, by `read`, counted if the pipe is followed.
    pub(super) fn read(&self, read: impl FnOnce() -> Nonblocking) -> Nonblocking {
        match self {
            Sink::Prefixed { lines, .. } | Sink::Captured { lines, .. } if lines.pipe.is_some() => {
                lines.label.task.read(lines.pipe.unwrap_or_default(), read)
            }
            _ => read(),
        }
    }

    pub(super) fn write(&mut self, bytes: &[u8]) {
        self.take(bytes, false);
    }

    /// At end-of-file: a last line without a newline is still a line.
    pub(super) fn finish(&mut self) {
        self.take(&[], true);
    }

    /// Takes in `bytes`, and at the `end` of the pipe, the line they leave unfinished.
    fn take(&mut self, bytes: &[u8], end: bool) {
        match self {
            Sink::ParentStderr => {
                let _ = io::stderr().write_all(bytes);
            }
            Sink::Prefixed { to, lines, prefix } => {
                pass_on(*to, &prefixed(lines, prefix, bytes, end));
            }
            Sink::Discard => {}
            Sink::Captured {
                sink,
                stream,
                lines,
            } => lines.feed(bytes, end, |label, task, line| {
                deliver(sink, label.pid, *stream, task, line)
            }),
        }
    }
}

/// A pipe's bytes cut into lines, each with the task that wrote its first bytes (as
/// far as its slot could tell, see [`RunningTask`](super::label::RunningTask)).
pub(crate) struct Lines {
    label: Label,
    /// The line so far, without its newline.
    partial: Vec<u8>,
    /// The task when its first bytes were read.
    task: Option<&'static str>,
    /// The pipe's number, if it is followed (see [`Sink::follow`]).
    pipe: Option<usize>,
    /// Bytes taken in so far.
    offset: u64,
}

impl Lines {
    fn new(label: Label) -> Lines {
        Lines {
            label,
            partial: Vec::new(),
            task: None,
            pipe: None,
            offset: 0,
        }
    }

    /// Takes in `bytes`, handing each line they complete to `line` (without its
    /// newline), a line that reaches [`LINE_BYTES`] as a piece of its own, and at the
    /// `end` of the pipe the line left without a newline.
    fn feed(
        &mut self,
        mut bytes: &[u8],
        end: bool,
        mut line: impl FnMut(&Label, Option<&'static str>, &[u8]),
    ) {
        while !bytes.is_empty() {
            if self.partial.is_empty() {
                self.task = self.label.task.task_at(self.pipe, self.offset);
            }
            let room = LINE_BYTES - self.partial.len();
            let window = &bytes[..room.min(bytes.len())];
            match window.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.partial.extend_from_slice(&window[..end]);
                    bytes = &bytes[end + 1..];
                    self.offset += end as u64 + 1;
                }
                None => {
                    self.partial.extend_from_slice(window);
                    bytes = &bytes[window.len()..];
                    self.offset += window.len() as u64;
                    if self.partial.len() < LINE_BYTES {
                        continue;
                    }
                }
            }
            line(&self.label, self.task, &self.partial);
            self.partial.clear();
        }
        if end && !self.partial.is_empty() {
            line(&self.label, self.task, &self.partial);
            self.partial.clear();
        }
    }
}

/// The lines `bytes` complete (and at the `end`, the unfinished one), each behind the
/// prefix for its process and task; `prefix` holds the last one made, remade only when
/// the task changes.
fn prefixed(
    lines: &mut Lines,
    prefix: &mut Option<(Option<&'static str>, String)>,
    bytes: &[u8],
    end: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 64);
    lines.feed(bytes, end, |label, task, line| {
        let made = match prefix {
            Some((named, made)) if *named == task => made,
            _ => {
                &mut prefix
                    .insert((task, label::prefix(label.writer, label.pid, task)))
                    .1
            }
        };
        out.extend_from_slice(made.as_bytes());
        out.extend_from_slice(line);
        out.push(b'\n');
    });
    out
}

/// Writes whole lines to the parent's own `stream`, in one write so that they are not
/// interleaved with the parent's own output.
fn pass_on(stream: OutputStream, out: &[u8]) {
    if out.is_empty() {
        return;
    }
    let _ = match stream {
        OutputStream::Stderr => io::stderr().lock().write_all(out),
        OutputStream::Stdout => {
            let mut stdout = io::stdout().lock();
            stdout.write_all(out).and_then(|()| stdout.flush())
        }
    };
}

/// Hands one line to the user's function. A panic there costs that line, not the
/// reader: a reader that stopped would leave the worker blocked on a full pipe.
fn deliver(
    sink: &OutputSink,
    worker: u32,
    stream: OutputStream,
    task: Option<&'static str>,
    text: &[u8],
) {
    let line = OutputLine {
        worker,
        stream,
        text: String::from_utf8_lossy(text).into_owned(),
        task,
    };
    let _ = panic::catch_unwind(AssertUnwindSafe(|| (sink.0)(line)));
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::output::label::RunningTask;

    pub(in crate::output) fn capture(stream: OutputStream) -> (Sink, Arc<Mutex<Vec<OutputLine>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let into = lines.clone();
        let OutputMode::Capture(sink) = OutputMode::capture(move |l| into.lock().unwrap().push(l))
        else {
            unreachable!()
        };
        let sink = Sink::Captured {
            sink,
            stream,
            lines: Lines::new(Label::worker(7, RunningTask::default())),
        };
        (sink, lines)
    }

    #[test]
    fn captured_lines_are_split_at_newlines_and_at_the_size_cap() {
        let (mut sink, lines) = capture(OutputStream::Stdout);
        sink.write(b"one\ntw");
        sink.write(b"o\n");
        sink.write(&vec![b'x'; LINE_BYTES + 10]);
        sink.write(b"\nlast, no newline");
        sink.finish();
        let lines = lines.lock().unwrap();
        let texts: Vec<usize> = lines.iter().map(|l| l.text.len()).collect();
        assert_eq!(texts, [3, 3, LINE_BYTES, 10, 16]);
        assert_eq!(lines[1].text, "two");
        assert_eq!(lines[4].text, "last, no newline");
        assert!(lines
            .iter()
            .all(|l| l.worker == 7 && l.stream == OutputStream::Stdout && l.task.is_none()));
    }

    /// Each line is prefixed with the task that ran when its first bytes came: a line
    /// begun under one task and ended under the next keeps the first.
    #[test]
    fn prefixed_lines_name_the_task_at_their_first_bytes() {
        let running = RunningTask::default();
        let mut lines = Lines::new(Label::worker(42, running.clone()));
        let mut prefix = None;
        let mut out = prefixed(&mut lines, &mut prefix, b"starting\nhalf ", false);
        running.set("demo::parse");
        out.extend(prefixed(
            &mut lines,
            &mut prefix,
            b"a line\nparsing\n",
            false,
        ));
        running.set("demo::Sum");
        out.extend(prefixed(&mut lines, &mut prefix, b"", false));
        out.extend(prefixed(&mut lines, &mut prefix, b"no newline", false));
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "[worker 42] starting\n[worker 42] half a line\n[worker 42 demo::parse] parsing\n"
        );
        let rest = prefixed(&mut lines, &mut prefix, b"", true);
        assert_eq!(rest, b"[worker 42 demo::Sum] no newline\n");
        assert!(prefixed(&mut lines, &mut prefix, b"", true).is_empty());
    }

    /// The default sends stderr through the prefix and leaves stdout to the worker;
    /// `Raw` copies stderr as it comes; `Prefixed` pipes stdout too.
    #[test]
    fn each_mode_picks_its_sink() {
        let label = || Label::worker(1, RunningTask::default());
        let kind = |mode: OutputMode, stream| match Sink::new(&mode, label(), stream) {
            Sink::ParentStderr => "raw",
            Sink::Prefixed { .. } => "prefixed",
            Sink::Discard => "discard",
            Sink::Captured { .. } => "captured",
        };
        use OutputStream::{Stderr, Stdout};
        assert_eq!(kind(OutputMode::Inherit, Stderr), "prefixed");
        assert_eq!(kind(OutputMode::Inherit, Stdout), "discard");
        assert_eq!(kind(OutputMode::Raw, Stderr), "raw");
        assert_eq!(kind(OutputMode::Raw, Stdout), "discard");
        assert_eq!(kind(OutputMode::Prefixed, Stdout), "prefixed");
        assert_eq!(kind(OutputMode::Null, Stderr), "discard");
        assert_eq!(kind(OutputMode::capture(|_| {}), Stdout), "captured");
        assert!(OutputMode::Prefixed.pipes_stdout() && !OutputMode::Inherit.pipes_stdout());
        assert!(OutputMode::Raw.inherits_stdout() && !OutputMode::Null.inherits_stdout());
    }

    #[test]
    fn a_panicking_sink_loses_one_line_not_the_rest() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let stdio = OutputMode::capture(move |l: OutputLine| {
            assert_ne!(l.text, "boom", "the sink panics on this line");
            into.lock().unwrap().push(l.text);
        });
        let label = Label::worker(1, RunningTask::default());
        let mut sink = Sink::new(&stdio, label, OutputStream::Stderr);
        sink.write(b"a\nboom\nb\n");
        assert_eq!(*seen.lock().unwrap(), ["a", "b"]);
    }
}
