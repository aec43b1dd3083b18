//! What becomes of a worker's stdout and stderr ([`OutputMode`]), and the lines a
//! captured stream hands to the user's function ([`OutputLine`]).

use std::fmt;
use std::sync::Arc;

/// What becomes of a worker's stdout or stderr.
///
/// ```no_run
/// use procpool::{OutputMode, Pool};
///
/// # fn main() -> Result<(), procpool::BuildError> {
/// // Workers' stderr as they wrote it, without `[worker 4242 my::Task] ` in front.
/// let pool = Pool::builder().stderr(OutputMode::Raw).build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum OutputMode {
    /// Passed on to the parent's own stream (the default), each stream the way that
    /// suits it: stderr [`Prefixed`](OutputMode::Prefixed), so that a worker's panic
    /// message cannot pass for the program's own; stdout [`Raw`](OutputMode::Raw), as
    /// fast as the parent's own prints.
    #[default]
    Inherit,
    /// Passed on to the parent's own stream as the worker wrote it. Stdout is inherited
    /// outright; stderr goes through a pipe that the parent copies to its stderr, so
    /// that it can keep the last lines for crash reports (a worker's stderr is never a
    /// terminal).
    Raw,
    /// Passed on to the parent's own stream through a pipe, line by line, each line
    /// prefixed with whose it is: `[worker 4242 demo::parse] ` (the worker's pid and
    /// the [`NAME`](crate::Task::NAME) of the task it runs), `[worker 4242] ` before its
    /// first task, `[fork server 4242] ` for the fork server's own words.
    ///
    /// The task is the one the worker's slot had started when the line's first bytes
    /// were written: what a pipe holds when its worker moves on to another task is the
    /// task before's, however late the parent reads it. Two cases are approximate: a
    /// task sent ahead (pipelined) that starts writing before the parent has read the
    /// answer of the one before it is named after that one, and a thread a task left
    /// behind is named after whatever task runs. A line is passed on once complete (a
    /// line over 64 KiB in pieces, each prefixed), or when the worker's pipe closes.
    /// For stdout this costs a pipe and a copy in the parent, which the default spares
    /// it.
    Prefixed,
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

    /// Whether a worker's stdout under this mode is a pipe to the parent (else it is
    /// inherited outright, or `/dev/null`).
    pub(crate) fn pipes_stdout(&self) -> bool {
        matches!(self, OutputMode::Prefixed | OutputMode::Capture(_))
    }

    /// Whether a worker's stdout under this mode is the parent's own.
    pub(crate) fn inherits_stdout(&self) -> bool {
        matches!(self, OutputMode::Inherit | OutputMode::Raw)
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
    /// The [`NAME`](crate::Task::NAME) of the task that wrote the line, as far as the
    /// parent can tell (see [`OutputMode::Prefixed`]); `None` before the worker's
    /// first task, and for the fork server's own lines.
    pub task: Option<&'static str>,
}

/// A worker's standard output stream or its standard error stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}
