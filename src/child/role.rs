//! Whether this process has become a worker (or a fork server): set once, at
//! [`init`](crate::init) or right after a fork.

use std::sync::atomic::{AtomicBool, Ordering};

static IN_WORKER: AtomicBool = AtomicBool::new(false);

/// Whether this process is serving as a worker (so a pool built inside a task is a
/// nested pool, not a missing `init()`).
pub(crate) fn is_worker() -> bool {
    IN_WORKER.load(Ordering::Relaxed)
}

/// Marks this process as a worker; `true` if it already was.
pub(crate) fn become_worker() -> bool {
    IN_WORKER.swap(true, Ordering::SeqCst)
}
