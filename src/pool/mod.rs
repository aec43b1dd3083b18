//! The pool: its builder, the handles it gives out, the job queue and the map iterators.

mod builder;
mod gate;
mod handle;
mod job;
mod map;
mod core;

pub use builder::PoolBuilder;
pub use handle::TaskHandle;
pub use map::{Map, MapUnordered};
pub use self::core::Pool;

pub(crate) use job::Job;
pub(crate) use self::core::Shared;
