//! What becomes of a worker's stdout and stderr ([`OutputMode`]), and the lines a
//! captured stream hands to the user's function ([`OutputLine`]).

use std::fmt;
use std::sync::Arc;

/// What becomes of a worker's stdout or stderr.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum OutputMode {
    /// Passed on to the parent's own stream (the default). Stdout is inherited as is;
    /// stderr goes through a pipe that the parent copies to its stderr, so that it can
    /// keep the last lines for crash reports (a worker's stderr is never a terminal).
    #[default]
    Inherit,
    /// Discarded. For stderr, the last lines are still kept for crash reports.
    Null,
    /// Captured line by line; made by [`OutputMode::capture`].
    Capture(OutputSink),
}

impl OutputMode {
    /// Captures the stream: `sink` receives each line every worker writes to it, as an
    /// [`OutputLine`] (without the newline; a line over 64 KiB arrives in pieces).
    ///
    /// A line is what ends in a newline: output a task leaves unterminated runs on into
    /// whatever the worker writes next.
    ///
    /// `sink` runs on the parent's reader thread for that worker's pipe, so lines of
    /// one worker arrive in order; a slow `sink` slows down the worker that prints (the
    /// pipe fills up). A panic in `sink` loses that line only. When a pool's `join`,
    /// `terminate` or drop returns, every line its workers wrote has been delivered
    /// (unless a process a task started in the background still holds the pipe). For
    /// stderr, crash reports keep the last lines as well.
    pub fn capture(sink: impl Fn(OutputLine) + Send + Sync + 'static) -> OutputMode {
        OutputMode::Capture(OutputSink(Arc::new(sink)))
    }
}

/// The function a [captured](OutputMode::capture) stream's lines go to.
#[derive(Clone)]
pub struct OutputSink(pub(crate) Arc<dyn Fn(OutputLine) + Send + Sync>);

impl fmt::Debug for OutputSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OutputSink(..)")
    }
}

/// One line a worker wrote to a [captured](OutputMode::capture) stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutputLine {
    /// The worker's process id.
    pub worker: u32,
    /// Which of its streams.
    pub stream: OutputStream,
    /// The line, without its newline; bytes that are not UTF-8 are replaced.
    pub text: String,
}

/// A worker's standard output stream or its standard error stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}
