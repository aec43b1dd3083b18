//! procpool runs serde-serializable tasks in a pool of worker processes, so that a task
//! that panics, segfaults, aborts, exits, runs out of memory or never ends takes down
//! only its own worker. That task gets a precise [`TaskError`]; the worker is replaced;
//! every other task goes on.
//!
//! ```no_run
//! #[procpool::task]
//! fn square(n: u64) -> u64 {
//!     n * n
//! }
//!
//! fn main() -> anyhow::Result<()> {
//!     // First line of main: in a worker process this never returns.
//!     procpool::init();
//!
//!     let pool = procpool::Pool::new()?;
//!     let squares: Vec<u64> = pool
//!         .map_fn(square, 1..=10)
//!         .collect::<Result<_, _>>()?;
//!     assert_eq!(squares[9], 100);
//!     Ok(())
//! }
//! ```
//!
//! * [`#[procpool::task]`][attribute] makes a function a task (feature `macros`, on by
//!   default); [`Pool::call`] and [`Pool::map_fn`] run it in workers, and it still calls
//!   like the function here. [`Task`] and [`register!`] define a task by hand, a struct
//!   and an `impl`. [`Pool`] and [`PoolBuilder`] run either kind.
//! * [`TaskOptions`] give one call, submit or map a timeout or retries of its own, over
//!   the task's own ([`Task::options`], or the attribute's `timeout` and `retries`);
//!   [`as_completed`] and [`TaskHandle::wait_any`] wait on several handles at once.
//! * [`Launch`] picks where workers come from: the current executable (the default), a
//!   separate worker binary, or a fork server started as either. In tests, use
//!   [`test_support!`].
//! * `docs/ARCHITECTURE.md` and `docs/FAILURES.md` in the repository describe the
//!   processes, the wire format and every failure's outcome.
//!
#![cfg_attr(feature = "macros", doc = "[attribute]: macro@task")]
#![cfg_attr(not(feature = "macros"), doc = "[attribute]: TaskFn")]

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
mod task_fn;
mod wire;

pub use child::context::context;
pub use error::{
    BuildError, ContextError, Direction, Side, SubmitError, SubmitErrorKind, TaskError,
};
pub use launch::Launch;
pub use output::mode::{OutputLine, OutputMode, OutputSink, OutputStream};
pub use pool::{
    as_completed, AsCompleted, Map, MapUnordered, Pool, PoolBuilder, TaskHandle, TaskOptions,
};
pub use shared::SharedSlice;
pub use task::{BoxError, Task};
pub use task_fn::{Call, Calls, TaskFn};

#[cfg(feature = "macros")]
pub use procpool_macros::task;

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
    pub use crate::task_fn::{assert_task_error, assert_task_value, TaskResult};
    pub use inventory;
}
