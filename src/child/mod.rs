//! Code that runs inside a worker or the fork server, never in the pool's process:
//! the role chosen at [`init`](crate::init) ([`entry`], [`role`]), the worker loop
//! ([`serve`], which answers batches in parts as they run long: [`flush`]; in a forked
//! process, [`forked`]),
//! the fork server's loop ([`fork_server`]), and what tasks reach from inside
//! ([`context`], panic capture in [`panics`]). [`test_entry`] is the test harness's
//! way into the same entry.

pub(crate) mod context;
pub(crate) mod entry;
pub(crate) mod flush;
pub(crate) mod fork_server;
pub(crate) mod forked;
pub(crate) mod panics;
pub(crate) mod role;
pub(crate) mod serve;
pub(crate) mod test_entry;
