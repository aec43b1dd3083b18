//! The parent's side of one worker slot: the supervisor thread that starts, watches
//! and replaces its worker ([`supervisor`]), the worker process handle with its kill
//! sequence ([`process`]), and the reaper that sees retired workers out ([`reaper`]).

pub(crate) mod process;
pub(crate) mod reaper;
pub(crate) mod supervisor;
