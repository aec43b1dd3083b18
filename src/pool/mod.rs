//! The pool: its builder, the handles it gives out, the job queue and the map iterators.

mod builder;
mod core;
mod gate;
mod handle;
mod job;
mod map;

pub use self::core::Pool;
pub use builder::PoolBuilder;
pub use handle::TaskHandle;
pub use map::{Map, MapUnordered};

pub(crate) use self::core::Shared;
pub(crate) use job::{Encoded, Job, RawOutcome, Segment};
#[cfg(test)]
pub(crate) use job::{Ticket, Work};
