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
//! * [`Pool::stats`] counts tasks by state and outcome, and workers started and lost;
//!   [`PoolBuilder::on_event`] hears each [`Event`] as it happens. With the `tracing`
//!   feature, the pool traces maps, jobs and breakdowns for your own subscriber.
//! * With the feature `progress`, [`.progress()`][progress] on a map draws a live
//!   progress bar on a terminal (indicatif): position, ETA, and the outcomes counted by
//!   kind as they come, with the workers replaced.
//! * [`SharedSlice`] and [`FrozenSlice`] carry big arrays to workers by shared memory,
//!   not by copy; many tasks of a map can share one `FrozenSlice`. [`OutputMode`] says
//!   what becomes of workers' stdout and stderr (by default, stderr lines say which
//!   worker and task wrote them).
//! * [`Launch`] picks where workers come from: the current executable (the default), a
//!   separate worker binary, or a fork server started as either. In tests, use
//!   [`test_support!`].
//! * `docs/ARCHITECTURE.md` and `docs/FAILURES.md` in the repository describe the
//!   processes, the wire format and every failure's outcome.
//! * With the feature `async`, the same from async code under any executor (see
//!   [Async](#async) below).
#![cfg_attr(
    feature = "async",
    doc = r#"
# Async

The feature `async` adds what async code needs, for any executor (it depends on
`futures-core` for the `Stream` trait, on no runtime):

* `handle.await`: a [`TaskHandle`] is a future, a [`TaskFuture`]. Dropping it before the
  outcome is in cancels the task, so `tokio::time::timeout` and a `select!` arm that
  loses stop the work and free the worker; keep the handle, or lend the future
  (`&mut future`), to let the task go on.
* [`Pool::submit_async`] (and [`submit_async_with`](Pool::submit_async_with)) awaits
  room under [`max_in_flight`](PoolBuilder::max_in_flight) instead of blocking a thread.
* [`Map::into_stream`] and [`MapUnordered::into_stream`] make a map a
  `futures_core::Stream` ([`MapStream`]).

Call [`init()`] first in `main`, before building the runtime: a fork server must start
from a program that runs one thread, and a worker started from the program should not
carry a runtime's threads. `#[tokio::main]` builds its runtime before the body of `main`
runs, so build it by hand after `init()`:

```no_run
# use serde::{Deserialize, Serialize};
# #[derive(Serialize, Deserialize)]
# struct Square(u64);
# impl procpool::Task for Square {
#     const NAME: &'static str = "async::Square";
#     type Output = u64;
#     fn run(self) -> Result<u64, procpool::BoxError> { Ok(self.0 * self.0) }
# }
# procpool::register!(Square);
use futures::StreamExt;

fn main() -> anyhow::Result<()> {
    procpool::init();
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let pool = procpool::Pool::new()?;
    let nine = pool.submit_async(Square(3)).await?.await?;
    assert_eq!(nine, 9);
    let mut squares = pool.map_unordered((1..=10).map(Square)).into_stream();
    while let Some((index, outcome)) = squares.next().await {
        assert_eq!(outcome?, (index as u64 + 1).pow(2));
    }
    Ok(())
}
```

A map borrows its pool, so it cannot be handed to `tokio::spawn` alone: move the pool,
or an `Arc<Pool>`, into the spawned task and start the map there ([`MapStream`] shows
how). The map pulls its inputs on the executor's thread, so its iterator should not
block.
"#
)]
//!
#![cfg_attr(feature = "progress", doc = "[progress]: Map::progress")]
#![cfg_attr(not(feature = "progress"), doc = "[progress]: Map")]
#![cfg_attr(feature = "macros", doc = "[attribute]: macro@task")]
#![cfg_attr(not(feature = "macros"), doc = "[attribute]: TaskFn")]

mod child;
mod encoded;
mod error;
mod frozen;
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
pub use encoded::{decode_output, decode_value, encode_value, EncodedTask};
pub use error::{
    BuildError, ContextError, Direction, Side, SubmitError, SubmitErrorKind, TaskError,
    TaskErrorKind,
};
pub use frozen::FrozenSlice;
/// The terminal progress bars of the feature `progress`, re-exported so that a bar
/// given to [`Map::progress_with`] is of the version procpool uses.
#[cfg(feature = "progress")]
pub use indicatif;
pub use launch::Launch;
pub use output::mode::{OutputLine, OutputMode, OutputSink, OutputStream};
#[cfg(feature = "progress")]
pub use pool::Progress;
pub use pool::{
    as_completed, AsCompleted, EncodedHandle, Map, MapUnordered, Outcomes, Pool, PoolBuilder,
    Stats, TaskHandle, TaskOptions, WorkerExits,
};
#[cfg(feature = "async")]
pub use pool::{MapStream, SubmitFuture, TaskFuture};
pub use shared::SharedSlice;
pub use slot::event::{Event, ExitCause, ExitKind, TaskId};
pub use task::{BoxError, Task};
pub use task_fn::{Call, Calls, TaskFn};

#[cfg(feature = "macros")]
pub use procpool_macros::task;

/// Turns this process into a worker when a pool started it as one; otherwise returns at
/// once. Call it first thing in `main` of any program that uses the default
/// [`Launch::CurrentExe`], and in a separate worker binary.
///
/// First means before any thread starts and before an async runtime is built (which
/// `#[tokio::main]` does before the body of `main` runs): a fork server must start
/// single-threaded, and a worker has no use for the program's threads.
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
