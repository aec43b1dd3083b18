//! The exit codes a worker or a fork server ends with when it fails on its own (a
//! task's `exit(n)` is the task's): the parent reads them in a failed start's message.

/// A worker or fork server that could not reach its parent or set itself up.
pub(crate) const START: i32 = 70;
/// A worker that received a frame it could not read, or whose link broke.
pub(crate) const PROTOCOL: i32 = 76;
/// A forked worker whose loop panicked: the Rust runtime's code for a panic that ends
/// `main`.
pub(crate) const PANIC: i32 = 101;
