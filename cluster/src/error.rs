//! The cluster mode's errors: one type, [`ClusterError`], for what the submitter and the
//! agent do on the server. A task's own failure is never one of these: it is that
//! task's [`TaskError`](procpool::TaskError), in its outcome.

use std::time::Duration;

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A run id must be 1 to 128 letters, digits, `-`, `_`, `.` or `:`.
    #[error("invalid run id {0:?}: use 1 to 128 letters, digits, '-', '_', '.' or ':'")]
    InvalidRunId(String),
    /// The server refused a command, or answered with something that does not read as
    /// what the command gives. (A server out of reach is [`Unreachable`](Self::Unreachable).)
    #[error("redis failed while {during}")]
    Redis {
        /// What was being done.
        during: &'static str,
        /// The last error the client gave.
        #[source]
        source: redis::RedisError,
    },
    /// The server stayed out of reach for the whole patience.
    #[error("redis unreachable for {waited:?} while {during}")]
    Unreachable {
        /// What was being done.
        during: &'static str,
        /// How long reconnecting was tried.
        waited: Duration,
        /// The last error the client gave.
        #[source]
        source: redis::RedisError,
    },
    /// The run does not exist on the server (never created, collected and expired, or
    /// lost by a server restarted without persistence).
    #[error("no run {0:?} on the server")]
    NoSuchRun(String),
    /// The run exists but was made for another task type.
    #[error("run {run:?} holds tasks of {found:?}, not {wanted:?}")]
    OtherTask {
        /// The run.
        run: String,
        /// The task type it was created for.
        found: String,
        /// The task type asked for.
        wanted: String,
    },
    /// The run's settings on the server are not what a submitter writes (its count
    /// of tasks is not a count): no task of it can be numbered.
    #[error("run {run:?} has garbled settings: {reason}")]
    Garbled {
        /// The run.
        run: String,
        /// What is wrong with them.
        reason: String,
    },
    /// A task could not be encoded (its `Serialize` failed, or it holds shared memory,
    /// which does not leave the machine), or its encoding is bigger than the server
    /// holds in a string (`proto-max-bulk-len`, 512 MiB by default).
    #[error("could not encode the task")]
    Encode(#[source] procpool::TaskError),
    /// A thread of the agent could not be started.
    #[error("could not start a thread")]
    Thread(#[source] std::io::Error),
    /// The agent's local pool can no longer run tasks (it could not start workers):
    /// the agent stopped serving rather than take tasks it cannot run.
    #[error("the agent's pool can no longer run tasks")]
    NoWorkers(#[source] procpool::TaskError),
    /// The agent's local pool could not be built.
    #[error("could not build the agent's pool")]
    Pool(#[from] procpool::BuildError),
}

impl ClusterError {
    /// The server could not be reached in time.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClusterError::Unreachable { .. })
    }

    /// The run is not on the server.
    pub fn is_no_such_run(&self) -> bool {
        matches!(self, ClusterError::NoSuchRun(_))
    }
}
