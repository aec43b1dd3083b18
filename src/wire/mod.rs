//! Everything on the wire: frames and messages between a parent and one worker
//! ([`frame`], [`batch`]), between a pool and its fork server ([`fork_server`]), the
//! batch journal's layout in shared memory ([`journal`]), and what a started process
//! reads from its environment ([`env`](mod@env)) or tells by its exit code ([`exit_code`]). The
//! protocol's version is [`frame::PROTOCOL`].
//!
//! [`codec`] is the one place values are turned into bytes (bincode 2.0.1 today, so the
//! format can be swapped in one file); the descriptors of shared buffers go on the
//! side, in the tables of [`fds`]. [`frame`] lays out a frame as
//! `payload | header | header length`, which lets a task or output be encoded straight
//! into the buffer that is sent, with no second copy.

pub(crate) mod batch;
pub(crate) mod codec;
pub(crate) mod env;
pub(crate) mod exit_code;
pub(crate) mod fds;
pub(crate) mod fork_server;
pub(crate) mod frame;
pub(crate) mod journal;
