//! procpool's tasks on many machines, through Redis Streams.
//!
//! A *submitter* opens a [`Run`] (a batch of tasks of one type, with an id), submits
//! tasks and collects one [`Outcome`] per task. A node *agent* ([`Agent`]) on each
//! machine runs a procpool [`Pool`](procpool::Pool) and takes from the server only as
//! many tasks as it has room for. The outcomes are the local pool's [`TaskError`]s,
//! with the name of the node that wrote them: a segfault on another machine is a
//! [`TaskError::Signaled`] with the worker's stderr tail. A crash is tried again on any
//! agent, up to the run's cap on deliveries; a task that crashes on every delivery ends
//! in [`TaskError::Poisoned`], whose `last_error` is that `Signaled`.
//!
//! [`TaskError`]: procpool::TaskError
//! [`TaskError::Signaled`]: procpool::TaskError::Signaled
//! [`TaskError::Poisoned`]: procpool::TaskError::Poisoned
//!
//! What the server guarantees, whatever fails (see `docs/CLUSTER.md`):
//! - a task runs at least once, and its submitter keeps exactly one outcome: the
//!   first written (an outcome and its acknowledgement go in one `MULTI`);
//! - a running task's lease is renewed by its agent (`XCLAIM … JUSTID`) while the
//!   agent lives, however long the task; an agent that dies stops renewing, and other
//!   agents take its tasks once the lease (5 s by default) runs out;
//! - a worker crash releases its task at once for any agent, its delivery counted and
//!   the crash kept as the reason; past the cap (3 deliveries by default) the task ends
//!   in [`TaskError::Poisoned`](procpool::TaskError::Poisoned) and goes to the run's
//!   dead letters;
//! - whatever is read from the server is untrusted: a malformed entry is a typed
//!   error for that entry (or a dead letter), never a panic, and a run whose keys are
//!   broken or gone is skipped, not the end of the agent. Only tasks
//!   the agent's program registered run, but whoever can write to the server can run
//!   those with inputs of their choosing: protect the server as you would the program.
//!
//! ```no_run
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize)]
//! # struct Parse(String);
//! # impl procpool::Task for Parse {
//! #     const NAME: &'static str = "doc::Parse";
//! #     type Output = usize;
//! #     fn run(self) -> Result<usize, procpool::BoxError> { Ok(self.0.len()) }
//! # }
//! # fn main() -> Result<(), procpool_cluster::ClusterError> {
//! let mut run = procpool_cluster::Run::<Parse>::builder("redis://127.0.0.1/", "nightly-42")
//!     .open()?;
//! for path in ["a.txt", "b.txt"] {
//!     run.submit(&Parse(path.into()))?;
//! }
//! for outcome in run.outcomes() {
//!     let outcome = outcome?;
//!     println!("task {} on {}: {:?}", outcome.seq, outcome.node, outcome.result);
//! }
//! # Ok(())
//! # }
//! ```

mod agent;
mod entry;
mod error;
mod keys;
mod limit;
mod link;
mod reply;
mod submit;

pub use agent::serve::{
    Agent, AgentBuilder, DEFAULT_LEASE, DEFAULT_MAX_DELIVERIES, DEFAULT_PATIENCE,
};
pub use error::ClusterError;
pub use submit::outcome::{DeadLetter, Outcome};
pub use submit::run::{Outcomes, Run, RunBuilder, DEFAULT_EXPIRY};
