//! Public error types: one per operation, each with `is_*` predicates.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where an encode or decode step ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// In the process that owns the pool.
    Parent,
    /// In the worker process.
    Worker,
}

/// Which way the value was travelling.
///
/// Together with [`Side`] it names the step: the parent encodes the task (`Parent`,
/// `ToWorker`), the worker decodes it (`Worker`, `ToWorker`), the worker encodes the
/// output (`Worker`, `ToParent`) and the parent decodes it (`Parent`, `ToParent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// The task, from the parent to the worker.
    ToWorker,
    /// The output, from the worker to the parent.
    ToParent,
}

/// Why one task did not produce an output.
///
/// Every submitted task ends in exactly one `Ok(output)` or one `TaskError`. Crash
/// variants carry the last lines the worker wrote to stderr ([`TaskError::stderr_tail`]).
///
/// It is `Serialize` and `Deserialize`, so that an outcome can travel on to another
/// process or machine (the cluster mode's outcomes do) and compare equal there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the worker survived and goes on serving.
    #[error("task panicked{}: {message}", at(location))]
    Panicked {
        /// The panic payload, when it was a string.
        message: String,
        /// `file:line:column` of the panic, when known.
        location: Option<String>,
    },
    /// The task returned `Err`; `chain` holds its message and then each `source()`.
    #[error("task failed: {}", chain.join(": "))]
    Failed {
        /// The error's message followed by the messages of its causes, outermost first.
        chain: Vec<String>,
    },
    /// The worker was killed by a signal while running the task.
    #[error("worker killed by {name} (signal {signal}){}{}", if *core_dumped { ", core dumped" } else { "" }, last_line(stderr))]
    Signaled {
        /// The signal number.
        signal: i32,
        /// Its name, such as `SIGSEGV`.
        name: String,
        /// Whether the kernel wrote a core dump.
        core_dumped: bool,
        /// The last lines of the worker's stderr.
        stderr: Vec<String>,
    },
    /// The worker exited (with `process::exit` or similar) while running the task.
    #[error(
        "worker exited with code {code} while running the task{}",
        last_line(stderr)
    )]
    Exited {
        /// The exit code.
        code: i32,
        /// The last lines of the worker's stderr.
        stderr: Vec<String>,
    },
    /// The task ran past its timeout (the pool's, or its own from
    /// [`TaskOptions`](crate::TaskOptions)); its worker was killed and replaced.
    #[error("task timed out after {after:?}")]
    TimedOut {
        /// The timeout that was exceeded: the task's own, if it had one.
        after: Duration,
        /// The last lines of the worker's stderr.
        stderr: Vec<String>,
    },
    /// The worker went over the pool's memory limit while running the task.
    #[error("worker went over its memory limit of {limit} bytes{}", used.map(|u| format!(" (resident {u} bytes)")).unwrap_or_default())]
    MemoryLimit {
        /// The limit, in bytes.
        limit: u64,
        /// The last resident size seen, in bytes.
        used: Option<u64>,
        /// The last lines of the worker's stderr.
        stderr: Vec<String>,
    },
    /// The task was cancelled through its handle.
    #[error("task cancelled")]
    Cancelled,
    /// A value could not be encoded or decoded.
    #[error("could not {} the {} in the {}: {message}", verb(*side, *direction), noun(*direction), place(*side))]
    Codec {
        /// The process the step ran in.
        side: Side,
        /// Which value: the task or its output.
        direction: Direction,
        /// What the codec said.
        message: String,
    },
    /// The worker has no task registered under this name.
    #[error("worker {worker} has no task named {name:?} (is it registered with procpool::register! and linked into that binary?)")]
    UnknownTask {
        /// The task's name.
        name: String,
        /// The worker executable.
        worker: String,
    },
    /// A task of this name is registered, but not for the task's concrete types: a
    /// generic task (one `NAME` for every `T`) submitted as an instantiation that was
    /// not registered, or a worker binary built with other types under the name. The
    /// task did not run.
    #[error("task {name:?} is registered in the {} for {}, not for {submitted}", place(*side), registered.join(", "))]
    WrongTypes {
        /// The task's name.
        name: String,
        /// The types submitted, as `Task -> Output`.
        submitted: String,
        /// The types registered under the name, each as `Task -> Output`.
        registered: Vec<String>,
        /// Where the mismatch was found: the parent checks before it sends, the
        /// worker on receipt.
        side: Side,
    },
    /// No worker could be started to run the task.
    #[error("no worker could be started: {message}")]
    WorkerStart {
        /// Why the last start failed.
        message: String,
    },
    /// The worker broke the protocol (a malformed frame); it was killed and replaced.
    #[error("worker broke the protocol: {message}")]
    Protocol {
        /// What was wrong.
        message: String,
    },
    /// The link to the worker failed while the worker was still there: a send or a
    /// receive was refused (for want of descriptors, most likely, with many shared
    /// buffers in flight). The worker was killed and replaced.
    #[error("the link to the worker failed: {message}")]
    Link {
        /// What failed.
        message: String,
    },
    /// The pool was terminated (or dropped) before the task finished.
    #[error("pool closed before the task finished")]
    PoolClosed,
    /// The task was delivered `attempts` times, each run ending in a breakdown (a crash,
    /// a timeout, its agent lost…), and was given up: the cluster mode's cap on
    /// deliveries. `last_error` is how the last attempt ended.
    #[error("task given up after {attempts} deliveries; the last: {last_error}")]
    Poisoned {
        /// How many times the task was delivered.
        attempts: u32,
        /// How the last delivery ended.
        last_error: Box<TaskError>,
    },
    /// The node agent running the task stopped renewing its lease (it died, froze, or
    /// lost its machine or its link to the server), and the task was taken back.
    #[error("node agent {agent} stopped renewing its lease on the task")]
    AgentLost {
        /// The agent's name, as it was registered with the server.
        agent: String,
    },
}

fn at(location: &Option<String>) -> String {
    location
        .as_ref()
        .map(|l| format!(" at {l}"))
        .unwrap_or_default()
}

fn last_line(stderr: &[String]) -> String {
    stderr
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!("; last stderr line: {l}"))
        .unwrap_or_default()
}

fn verb(side: Side, direction: Direction) -> &'static str {
    match (side, direction) {
        (Side::Parent, Direction::ToWorker) | (Side::Worker, Direction::ToParent) => "encode",
        _ => "decode",
    }
}

fn noun(direction: Direction) -> &'static str {
    match direction {
        Direction::ToWorker => "task",
        Direction::ToParent => "output",
    }
}

fn place(side: Side) -> &'static str {
    match side {
        Side::Parent => "parent",
        Side::Worker => "worker",
    }
}

/// What kind of [`TaskError`] a task ended in, without its details: for counting
/// outcomes ([`Stats`](crate::Stats)) and telling them apart in events.
///
/// One variant per variant of `TaskError`; [`TaskError::kind`] gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TaskErrorKind {
    /// [`TaskError::Panicked`].
    Panicked,
    /// [`TaskError::Failed`].
    Failed,
    /// [`TaskError::Signaled`].
    Signaled,
    /// [`TaskError::Exited`].
    Exited,
    /// [`TaskError::TimedOut`].
    TimedOut,
    /// [`TaskError::MemoryLimit`].
    MemoryLimit,
    /// [`TaskError::Cancelled`].
    Cancelled,
    /// [`TaskError::Codec`].
    Codec,
    /// [`TaskError::UnknownTask`].
    UnknownTask,
    /// [`TaskError::WrongTypes`].
    WrongTypes,
    /// [`TaskError::WorkerStart`].
    WorkerStart,
    /// [`TaskError::Protocol`].
    Protocol,
    /// [`TaskError::Link`].
    Link,
    /// [`TaskError::PoolClosed`].
    PoolClosed,
    /// [`TaskError::Poisoned`].
    Poisoned,
    /// [`TaskError::AgentLost`].
    AgentLost,
}

impl TaskErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [TaskErrorKind; 16] = [
        TaskErrorKind::Panicked,
        TaskErrorKind::Failed,
        TaskErrorKind::Signaled,
        TaskErrorKind::Exited,
        TaskErrorKind::TimedOut,
        TaskErrorKind::MemoryLimit,
        TaskErrorKind::Cancelled,
        TaskErrorKind::Codec,
        TaskErrorKind::UnknownTask,
        TaskErrorKind::WrongTypes,
        TaskErrorKind::WorkerStart,
        TaskErrorKind::Protocol,
        TaskErrorKind::Link,
        TaskErrorKind::PoolClosed,
        TaskErrorKind::Poisoned,
        TaskErrorKind::AgentLost,
    ];

    /// A short lowercase name: `panicked`, `signaled`, `timed_out`…
    pub fn name(self) -> &'static str {
        match self {
            TaskErrorKind::Panicked => "panicked",
            TaskErrorKind::Failed => "failed",
            TaskErrorKind::Signaled => "signaled",
            TaskErrorKind::Exited => "exited",
            TaskErrorKind::TimedOut => "timed_out",
            TaskErrorKind::MemoryLimit => "memory_limit",
            TaskErrorKind::Cancelled => "cancelled",
            TaskErrorKind::Codec => "codec",
            TaskErrorKind::UnknownTask => "unknown_task",
            TaskErrorKind::WrongTypes => "wrong_types",
            TaskErrorKind::WorkerStart => "worker_start",
            TaskErrorKind::Protocol => "protocol",
            TaskErrorKind::Link => "link",
            TaskErrorKind::PoolClosed => "pool_closed",
            TaskErrorKind::Poisoned => "poisoned",
            TaskErrorKind::AgentLost => "agent_lost",
        }
    }

    /// Whether the task broke down rather than returned: it panicked, or its worker
    /// died, was killed for it (timeout, memory) or broke the protocol or the link, its
    /// node agent was lost, or it was given up after breaking down on every delivery.
    /// Not its own `Err`, a cancel, a closed pool, a codec or registry mismatch. Wider
    /// than [`TaskError::is_crash`], which is the worker dying under the task.
    pub fn is_breakdown(self) -> bool {
        matches!(
            self,
            TaskErrorKind::Panicked
                | TaskErrorKind::Signaled
                | TaskErrorKind::Exited
                | TaskErrorKind::TimedOut
                | TaskErrorKind::MemoryLimit
                | TaskErrorKind::Protocol
                | TaskErrorKind::Link
                | TaskErrorKind::AgentLost
                | TaskErrorKind::Poisoned
        )
    }

    /// Its place in [`ALL`](Self::ALL).
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for TaskErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TaskError {
    /// What kind of error this is, without its details.
    ///
    /// ```
    /// use procpool::{TaskError, TaskErrorKind};
    /// assert_eq!(TaskError::Cancelled.kind(), TaskErrorKind::Cancelled);
    /// ```
    pub fn kind(&self) -> TaskErrorKind {
        match self {
            TaskError::Panicked { .. } => TaskErrorKind::Panicked,
            TaskError::Failed { .. } => TaskErrorKind::Failed,
            TaskError::Signaled { .. } => TaskErrorKind::Signaled,
            TaskError::Exited { .. } => TaskErrorKind::Exited,
            TaskError::TimedOut { .. } => TaskErrorKind::TimedOut,
            TaskError::MemoryLimit { .. } => TaskErrorKind::MemoryLimit,
            TaskError::Cancelled => TaskErrorKind::Cancelled,
            TaskError::Codec { .. } => TaskErrorKind::Codec,
            TaskError::UnknownTask { .. } => TaskErrorKind::UnknownTask,
            TaskError::WrongTypes { .. } => TaskErrorKind::WrongTypes,
            TaskError::WorkerStart { .. } => TaskErrorKind::WorkerStart,
            TaskError::Protocol { .. } => TaskErrorKind::Protocol,
            TaskError::Link { .. } => TaskErrorKind::Link,
            TaskError::PoolClosed => TaskErrorKind::PoolClosed,
            TaskError::Poisoned { .. } => TaskErrorKind::Poisoned,
            TaskError::AgentLost { .. } => TaskErrorKind::AgentLost,
        }
    }

    /// The task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, TaskError::Panicked { .. })
    }
    /// The task returned `Err`.
    pub fn is_failed(&self) -> bool {
        matches!(self, TaskError::Failed { .. })
    }
    /// The worker died under the task: killed by a signal or exited.
    pub fn is_crash(&self) -> bool {
        self.is_signal() || self.is_exit()
    }
    /// The worker was killed by a signal.
    pub fn is_signal(&self) -> bool {
        matches!(self, TaskError::Signaled { .. })
    }
    /// The worker exited with a code.
    pub fn is_exit(&self) -> bool {
        matches!(self, TaskError::Exited { .. })
    }
    /// The task ran past its timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, TaskError::TimedOut { .. })
    }
    /// The worker went over its memory limit.
    pub fn is_memory_limit(&self) -> bool {
        matches!(self, TaskError::MemoryLimit { .. })
    }
    /// The task was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled)
    }
    /// Encoding or decoding failed.
    pub fn is_codec(&self) -> bool {
        matches!(self, TaskError::Codec { .. })
    }
    /// The worker does not know the task.
    pub fn is_unknown_task(&self) -> bool {
        matches!(self, TaskError::UnknownTask { .. })
    }
    /// The task's name is registered for other types.
    pub fn is_wrong_types(&self) -> bool {
        matches!(self, TaskError::WrongTypes { .. })
    }
    /// No worker could be started.
    pub fn is_worker_start(&self) -> bool {
        matches!(self, TaskError::WorkerStart { .. })
    }
    /// The worker sent a malformed frame.
    pub fn is_protocol(&self) -> bool {
        matches!(self, TaskError::Protocol { .. })
    }
    /// The link to the worker failed.
    pub fn is_link(&self) -> bool {
        matches!(self, TaskError::Link { .. })
    }
    /// The pool closed before the task finished.
    pub fn is_pool_closed(&self) -> bool {
        matches!(self, TaskError::PoolClosed)
    }
    /// The task was given up after too many deliveries.
    pub fn is_poisoned(&self) -> bool {
        matches!(self, TaskError::Poisoned { .. })
    }
    /// The node agent running the task was lost.
    pub fn is_agent_lost(&self) -> bool {
        matches!(self, TaskError::AgentLost { .. })
    }

    /// The signal that killed the worker, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self {
            TaskError::Signaled { signal, .. } => Some(*signal),
            _ => None,
        }
    }

    /// The worker's exit code, if it exited.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            TaskError::Exited { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The last lines the worker wrote to stderr before it died (empty when not a crash).
    pub fn stderr_tail(&self) -> &[String] {
        match self {
            TaskError::Signaled { stderr, .. }
            | TaskError::Exited { stderr, .. }
            | TaskError::TimedOut { stderr, .. }
            | TaskError::MemoryLimit { stderr, .. } => stderr,
            TaskError::Poisoned { last_error, .. } => last_error.stderr_tail(),
            _ => &[],
        }
    }

    /// Whether a retry may help: the worker died or broke down, not the task's own logic.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(
            self,
            TaskError::Signaled { .. }
                | TaskError::Exited { .. }
                | TaskError::Protocol { .. }
                | TaskError::Link { .. }
        )
    }
}

/// A task the pool would not accept; the task is handed back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SubmitError<T> {
    task: T,
    kind: SubmitErrorKind,
}

/// Why a submit was refused.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
#[non_exhaustive]
pub enum SubmitErrorKind {
    /// The pool was shut down or terminated.
    Closed,
    /// `try_submit` found the pool at its in-flight limit.
    Full,
    /// Every worker slot gave up after repeated start-up failures.
    Broken,
}

impl<T> SubmitError<T> {
    pub(crate) fn new(task: T, kind: SubmitErrorKind) -> Self {
        SubmitError { task, kind }
    }
    /// Takes the refused task back.
    pub fn into_inner(self) -> T {
        self.task
    }
    /// Why it was refused.
    pub fn kind(&self) -> SubmitErrorKind {
        self.kind
    }
    /// The pool no longer accepts tasks.
    pub fn is_closed(&self) -> bool {
        self.kind == SubmitErrorKind::Closed
    }
    /// The pool is at its in-flight limit (`try_submit` only).
    pub fn is_full(&self) -> bool {
        self.kind == SubmitErrorKind::Full
    }
    /// No worker can be started any more.
    pub fn is_broken(&self) -> bool {
        self.kind == SubmitErrorKind::Broken
    }
}

impl<T> fmt::Debug for SubmitError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitError")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for SubmitError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            SubmitErrorKind::Closed => "pool is closed",
            SubmitErrorKind::Full => "pool is at its in-flight limit",
            SubmitErrorKind::Broken => "no worker can be started (the pool gave up respawning)",
        })
    }
}

impl<T> std::error::Error for SubmitError<T> {}

impl<T> From<SubmitError<T>> for TaskError {
    fn from(e: SubmitError<T>) -> TaskError {
        match e.kind {
            SubmitErrorKind::Broken => TaskError::WorkerStart {
                message: e.to_string(),
            },
            _ => TaskError::PoolClosed,
        }
    }
}

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A builder setting is out of range.
    #[error("invalid pool setting: {0}")]
    Config(String),
    /// This process is itself a worker that was started without `procpool::init()`
    /// running first, so building a pool here would start workers without end.
    #[error("this process was started as a procpool worker but procpool::init() did not run at the start of main")]
    MissingInit,
    /// The operating system refused a resource the pool needs.
    #[error("could not set up the pool")]
    Io(#[from] std::io::Error),
}

/// Why a worker context could not be read inside a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// The pool was built without a context, or this is not a worker.
    #[error("no context was set on this pool")]
    Missing,
    /// The context bytes do not decode as the requested type.
    #[error("context does not decode as {type_name}: {message}")]
    Decode {
        /// The requested type.
        type_name: &'static str,
        /// What the codec said.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_place_and_name() {
        for (index, kind) in TaskErrorKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), index);
        }
        let mut names: Vec<&str> = TaskErrorKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TaskErrorKind::ALL.len());
    }

    #[test]
    fn an_error_s_kind_is_its_variant() {
        let signaled = TaskError::Signaled {
            signal: 11,
            name: "SIGSEGV".into(),
            core_dumped: false,
            stderr: Vec::new(),
        };
        assert_eq!(signaled.kind(), TaskErrorKind::Signaled);
        assert!(signaled.kind().is_breakdown());
        let failed = TaskError::Failed { chain: Vec::new() };
        assert_eq!(failed.kind(), TaskErrorKind::Failed);
        assert!(!failed.kind().is_breakdown());
        assert_eq!(TaskError::PoolClosed.kind(), TaskErrorKind::PoolClosed);
        assert!(!TaskErrorKind::Cancelled.is_breakdown());
        assert_eq!(TaskErrorKind::TimedOut.to_string(), "timed_out");
    }

    #[test]
    fn an_error_travels_through_serde_and_compares_equal() {
        let crash = TaskError::Signaled {
            signal: 11,
            name: "SIGSEGV".into(),
            core_dumped: true,
            stderr: vec!["about to fault".into()],
        };
        let poisoned = TaskError::Poisoned {
            attempts: 3,
            last_error: Box::new(crash.clone()),
        };
        let timed_out = TaskError::TimedOut {
            after: Duration::from_millis(1500),
            stderr: Vec::new(),
        };
        for error in [crash, poisoned.clone(), timed_out, TaskError::PoolClosed] {
            let mut bytes = Vec::new();
            crate::wire::codec::encode_into(&error, &mut bytes).unwrap();
            let back: TaskError = crate::wire::codec::decode(&bytes).unwrap();
            assert_eq!(back, error);
        }
        assert_eq!(poisoned.stderr_tail(), ["about to fault".to_owned()]);
        assert!(poisoned.kind().is_breakdown());
        assert_eq!(
            poisoned.to_string(),
            "task given up after 3 deliveries; the last: worker killed by SIGSEGV (signal 11), \
             core dumped; last stderr line: about to fault"
        );
    }
}
