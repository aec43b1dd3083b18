//! How a worker process comes to be: re-executing the current program, running a
//! separate worker binary, or forking from a fork server that was started either way.
//! All end with a worker holding its end of a link socket (see `link`).

pub(crate) mod exec;
pub(crate) mod fork;
pub(crate) mod spawner;

use std::path::PathBuf;

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
