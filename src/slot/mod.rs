//! The parent's side of one worker slot: the supervisor thread that starts, watches
//! and replaces its worker ([`supervisor`]), the worker process handle ([`process`]),
//! and the reaper that sees retired workers out ([`reaper`]). Both stop a worker the
//! same way, by one state machine ([`stop`]). The slot's decisions are pure functions,
//! tested without processes: what a frame from the worker is ([`answer`]), blame after
//! a loss ([`loss`]), how much to send ahead of the running task ([`pipeline`]), and
//! the next step of a worker's stop ([`stop::next`]).

pub(crate) mod answer;
mod busy;
pub(crate) mod loss;
pub(crate) mod pipeline;
pub(crate) mod process;
pub(crate) mod reaper;
mod start;
mod state;
pub(crate) mod stop;
pub(crate) mod supervisor;
mod worker;
