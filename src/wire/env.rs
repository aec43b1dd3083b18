//! The environment variables a pool sets for a process it starts, which tell
//! [`init`](crate::init) what the process is to become. Each is read once and removed,
//! so that a program a task starts does not mistake itself for a worker.

/// The number of the worker's inherited link socket: the process becomes a worker.
pub(crate) const WORKER: &str = "PROCPOOL_WORKER";
/// The inherited parent-death lifeline descriptor.
pub(crate) const LIFELINE: &str = "PROCPOOL_LIFELINE_FD";
/// The number of a fork server's inherited socket: the process becomes a fork server.
pub(crate) const FORK_SERVER: &str = "PROCPOOL_FORK_SERVER_FD";
