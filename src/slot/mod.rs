//! The parent's side of one worker slot: the supervisor thread that starts, watches
//! and replaces its worker ([`supervisor`]), the worker process handle with its kill
//! sequence ([`process`]), the reaper that sees retired workers out ([`reaper`]), and what it tells
//! as it goes ([`event`]).
//! The slot's decisions are pure functions, tested without processes: what a frame
//! from the worker is ([`answer`]), blame after a loss ([`loss`]), and how much to send
//! ahead of the running task ([`pipeline`]).

pub(crate) mod answer;
mod busy;
pub(crate) mod event;
pub(crate) mod loss;
pub(crate) mod pipeline;
pub(crate) mod process;
pub(crate) mod reaper;
#[cfg(test)]
mod scripted;
mod start;
pub(crate) mod starter;
mod state;
pub(crate) mod supervisor;
mod worker;
