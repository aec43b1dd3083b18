//! How a worker process comes to be: re-executing the current program, running a
//! separate worker binary, or forking from a fork server that was started either way.
//! All end with a worker holding its end of a link socket (see `link`).

pub(crate) mod exec;
mod fork;
mod test_entry;
pub(crate) mod zygote;

pub(crate) use exec::{Spawner, Starting};
pub(crate) use fork::Prestarted;
#[doc(hidden)]
pub use test_entry::{test_entry, TestEntry};

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Environment variable holding the number of the worker's inherited link socket; its
/// presence makes [`init`](crate::init) turn the process into a worker.
pub(crate) const ENV_SERVER: &str = "PROCPOOL_WORKER";
/// Environment variable holding the inherited parent-death lifeline descriptor.
pub(crate) const ENV_LIFELINE: &str = "PROCPOOL_LIFELINE_FD";
/// Environment variable naming the socket of a fork server; its presence makes
/// [`init`](crate::init) turn the process into one.
pub(crate) const ENV_ZYGOTE: &str = "PROCPOOL_FORK_SERVER_FD";

/// Where worker processes come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Launch {
    /// Re-execute the running program (the default). Its `main` must call
    /// [`procpool::init()`](crate::init) first; in a test binary, invoke
    /// [`procpool::test_support!()`](crate::test_support) once instead.
    #[default]
    CurrentExe,
    /// Run a separate worker executable, such as `procpool-worker`, whose `main` calls
    /// [`procpool::init()`](crate::init) and which links the task types.
    Binary(PathBuf),
    /// Fork every worker from a *fork server*: a respawn costs a `fork`, not an `exec`
    /// and a program start.
    ///
    /// The server is the program re-executed and stopped inside
    /// [`procpool::init()`](crate::init), which must therefore run first in `main`,
    /// while the program is single-threaded. It starts with the first worker it is
    /// asked for, and again if it has to be replaced. If the pool is built while the
    /// program is single-threaded and small (first thing in `main`), the first workers
    /// are forked from the program then and there instead, with none of its open
    /// descriptors (stdin is `/dev/null`, as for every worker), no blocked signals and
    /// none of its signal handlers but for `SIGSEGV` and `SIGBUS` (where the Rust
    /// runtime reports stack overflows); the server then starts with the first
    /// replacement.
    /// A process with more than one thread is never forked, and a server that finds
    /// itself with several threads refuses to start
    /// ([`TaskError::WorkerStart`](crate::TaskError) says so).
    /// A test harness runs tests on threads, so a test binary needs `harness = false`
    /// and its own `main` that calls `init()` first.
    ///
    /// A forked worker ends as a forked child should: it flushes its stdout (Rust's,
    /// and the C library's if no thread a task left behind holds its lock), then
    /// calls `_exit`. No C `atexit` handler or library destructor runs in it: neither
    /// the program's (which would otherwise run once in each worker) nor one a task
    /// registered, and other C streams a task left open are not flushed (nor is
    /// coverage or profiling data written at exit). A task that calls
    /// `std::process::exit` itself still runs them. Tasks that rely on exit handlers
    /// need [`CurrentExe`](Self::CurrentExe).
    ForkServer,
    /// Like [`ForkServer`](Self::ForkServer), with a separate worker executable as the
    /// fork server.
    ForkServerBinary(PathBuf),
}

impl Launch {
    /// Whether workers are forked from a fork server.
    pub fn is_fork_server(&self) -> bool {
        matches!(self, Launch::ForkServer | Launch::ForkServerBinary(_))
    }
}

/// What becomes of a worker's stdout or stderr.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Stdio {
    /// Passed on to the parent's own stream (the default). Stdout is inherited as is;
    /// stderr goes through a pipe that the parent copies to its stderr, so that it can
    /// keep the last lines for crash reports (a worker's stderr is never a terminal).
    #[default]
    Inherit,
    /// Discarded. For stderr, the last lines are still kept for crash reports.
    Null,
    /// Captured line by line; made by [`Stdio::capture`].
    Capture(OutputSink),
}

impl Stdio {
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
    pub fn capture(sink: impl Fn(OutputLine) + Send + Sync + 'static) -> Stdio {
        Stdio::Capture(OutputSink(Arc::new(sink)))
    }
}

/// The function a [captured](Stdio::capture) stream's lines go to.
#[derive(Clone)]
pub struct OutputSink(pub(crate) Arc<dyn Fn(OutputLine) + Send + Sync>);

impl fmt::Debug for OutputSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OutputSink(..)")
    }
}

/// One line a worker wrote to a [captured](Stdio::capture) stream.
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
