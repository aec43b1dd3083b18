//! How a worker process comes to be: re-executing the current program, or running a
//! separate worker binary. Both end in the same bootstrap (see `link`).

pub(crate) mod exec;
mod test_entry;

pub(crate) use exec::Spawner;
#[doc(hidden)]
pub use test_entry::{test_entry, TestEntry};

use std::path::PathBuf;

/// Environment variable naming the parent's bootstrap listener; its presence makes
/// [`init`](crate::init) turn the process into a worker.
pub(crate) const ENV_SERVER: &str = "PROCPOOL_WORKER";
/// Environment variable holding the inherited parent-death lifeline descriptor.
pub(crate) const ENV_LIFELINE: &str = "PROCPOOL_LIFELINE_FD";

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
}

/// What becomes of a worker's stdout or stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stdio {
    /// Passed on to the parent's own stream (the default). Stdout is inherited as is;
    /// stderr goes through a pipe that the parent copies to its stderr, so that it can
    /// keep the last lines for crash reports (a worker's stderr is never a terminal).
    #[default]
    Inherit,
    /// Discarded. For stderr, the last lines are still kept for crash reports.
    Null,
}
