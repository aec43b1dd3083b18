//! Where the bytes of one of a worker's pipes go, besides the crash tail ([`Sink`]): to
//! the parent's own stderr, nowhere, or line by line to the user's function.

use std::io::{self, Write};
use std::panic::{self, AssertUnwindSafe};

use super::mode::{OutputLine, OutputMode, OutputSink, OutputStream};

/// Longest captured line handed over in one piece.
const CAPTURED_LINE_BYTES: usize = 64 * 1024;

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

    pub(super) fn is_capture(&self) -> bool {
        matches!(self, Sink::Lines { .. })
    }

    pub(super) fn write(&mut self, bytes: &[u8]) {
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
    pub(super) fn finish(&mut self) {
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

#[cfg(test)]
pub(super) mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    pub(in crate::output) fn capture(stream: OutputStream) -> (Sink, Arc<Mutex<Vec<OutputLine>>>) {
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
}
