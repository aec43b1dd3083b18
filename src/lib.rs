//! procpool runs serde-serializable tasks in a pool of worker processes, so that a task
//! that panics, segfaults, aborts, exits, runs out of memory or never ends takes down
//! only its own worker. That task gets a precise [`TaskError`]; the worker is replaced;
//! every other task goes on.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Square(u64);
//!
//! impl procpool::Task for Square {
//!     const NAME: &'static str = "quickstart::Square";
//!     type Output = u64;
//!     fn run(self) -> Result<u64, procpool::BoxError> {
//!         Ok(self.0 * self.0)
//!     }
//! }
//! procpool::register!(Square);
//!
//! fn main() -> anyhow::Result<()> {
//!     // First line of main: in a worker process this never returns.
//!     procpool::init();
//!
//!     let pool = procpool::Pool::new()?;
//!     let squares: Vec<u64> = pool
//!         .map((1..=10).map(Square))
//!         .collect::<Result<_, _>>()?;
//!     assert_eq!(squares[9], 100);
//!     Ok(())
//! }
//! ```
//!
//! * [`Task`] and [`register!`] define work; [`Pool`] and [`PoolBuilder`] run it.
//! * [`TaskOptions`] give one submit or one map a timeout or retries of its own;
//!   [`as_completed`] and [`TaskHandle::wait_any`] wait on several handles at once.
//! * [`Pool::stats`] counts tasks by state and outcome, and workers started and lost;
//!   [`PoolBuilder::on_event`] hears each [`Event`] as it happens. With the `tracing`
//!   feature, the pool traces maps, jobs and breakdowns for your own subscriber.
//! * [`Launch`] picks where workers come from: the current executable (the default), a
//!   separate worker binary, or a fork server started as either. In tests, use
//!   [`test_support!`].
//! * `docs/ARCHITECTURE.md` and `docs/FAILURES.md` in the repository describe the
//!   processes, the wire format and every failure's outcome.

mod child;
mod error;
mod launch;
mod link;
mod output;
mod pool;
mod shared;
mod slot;
mod sys;
mod task;
mod wire;

pub use child::context::context;
pub use error::{
    BuildError, ContextError, Direction, Side, SubmitError, SubmitErrorKind, TaskError,
    TaskErrorKind,
};
pub use launch::Launch;
pub use output::mode::{OutputLine, OutputMode, OutputSink, OutputStream};
pub use pool::{
    as_completed, AsCompleted, Map, MapUnordered, Outcomes, Pool, PoolBuilder, Stats, TaskHandle,
    TaskOptions, WorkerExits,
};
pub use shared::SharedSlice;
pub use slot::event::{Event, ExitCause, ExitKind, TaskId};
pub use task::{BoxError, Task};

/// Turns this process into a worker when a pool started it as one; otherwise returns at
/// once. Call it first thing in `main` of any program that uses the default
/// [`Launch::CurrentExe`], and in a separate worker binary.
///
/// In a worker process it never returns: it serves tasks until the pool lets it go and
/// then exits the process.
pub fn init() {
    child::entry::enter_if_worker();
}

#[doc(hidden)]
pub mod __private {
    pub use crate::child::test_entry::{test_entry, TestEntry};
    pub use crate::task::Registration;
    pub use inventory;
}
