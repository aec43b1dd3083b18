//! The pool, in the parent: its builder and settings, admission (the in-flight
//! limit), the job queue the slots take from, the handles it gives out (and waiting
//! on several of them), the options a submit or a map may bring, the map iterators
//! that batch inputs (with the window of what they have out and the mailbox their
//! outcomes come back through), the calls of task functions on top of submit and map,
//! tasks that come as bytes from
//! another process (`encoded`), and where what happens goes: counts (`stats`), events and traces (`telemetry`,
//! `trace`). With the feature `async`: handles as futures, the awaited submit and the
//! maps as streams; with `progress`: maps drawn as progress bars.

pub(crate) mod api;
pub(crate) mod builder;
pub(crate) mod call;
pub(crate) mod completion;
pub(crate) mod config;
pub(crate) mod encoded;
#[cfg(feature = "async")]
pub(crate) mod future;
pub(crate) mod gate;
pub(crate) mod handle;
pub(crate) mod job;
pub(crate) mod mailbox;
pub(crate) mod map;
pub(crate) mod options;
#[cfg(feature = "progress")]
pub(crate) mod progress;
pub(crate) mod shared;
pub(crate) mod stats;
#[cfg(feature = "async")]
pub(crate) mod stream;
#[cfg(feature = "async")]
pub(crate) mod submit_async;
pub(crate) mod telemetry;
pub(crate) mod trace;
pub(crate) mod wakeup;
pub(crate) mod window;

pub use api::Pool;
pub use builder::PoolBuilder;
pub use completion::{as_completed, AsCompleted};
pub use encoded::EncodedHandle;
#[cfg(feature = "async")]
pub use future::TaskFuture;
pub use handle::TaskHandle;
pub use map::{Map, MapUnordered};
pub use options::TaskOptions;
#[cfg(feature = "progress")]
pub use progress::Progress;
pub use stats::{Outcomes, Stats, WorkerExits};
#[cfg(feature = "async")]
pub use stream::MapStream;
#[cfg(feature = "async")]
pub use submit_async::SubmitFuture;
