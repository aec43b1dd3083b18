//! A worker: the loop that runs inside the worker process ([`serve`]), and the parent-side
//! supervisor that starts, watches and replaces one worker ([`supervisor`]).

pub(crate) mod context;
pub(crate) mod journal;
pub(crate) mod output;
pub(crate) mod panics;
pub(crate) mod process;
pub(crate) mod reaper;
pub(crate) mod serve;
pub(crate) mod supervisor;
