//! The parent's side of one worker slot: the supervisor thread that starts, watches
//! and replaces its worker ([`supervisor`], through the states of `state.rs`), the
//! worker process handle ([`process`]), and the reaper that sees retired workers out
//! ([`reaper`]). Both stop a worker the same way, by one state machine ([`stop`]). What
//! happens is told as [`event`]s. The slot's decisions are
//! pure functions, tested without processes: what a frame from the worker is
//! ([`answer`]), blame after a loss ([`loss`]), how much to send ahead of the running
//! task ([`pipeline`]), and the next step of a worker's stop ([`stop::next`]); the
//! supervisor itself is driven by scripted workers in `scripted.rs`.

pub(crate) mod answer;
mod busy;
pub(crate) mod event;
pub(crate) mod loss;
mod lost;
pub(crate) mod pipeline;
pub(crate) mod process;
pub(crate) mod reaper;
#[cfg(test)]
mod scripted;
mod start;
mod state;
pub(crate) mod stop;
pub(crate) mod supervisor;
mod take_back;
mod worker;
