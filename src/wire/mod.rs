//! Frames and messages between a parent and one worker, and between a pool and its fork
//! server ([`zygote`]); depends only on serde.
//!
//! [`codec`] is the one place values are turned into bytes (bincode 2.0.1 today, so the
//! format can be swapped in one file). [`frame`] lays out a frame as
//! `payload | header | header length`, which lets a task or output be encoded straight
//! into the buffer that is sent, with no second copy.

pub(crate) mod batch;
pub(crate) mod codec;
pub(crate) mod frame;
pub(crate) mod zygote;
