//! A worker in a process just forked, by the fork server or from the program when the
//! pool was built: it runs the worker loop and leaves as a forked child should.

use std::io::Write;
use std::os::fd::OwnedFd;

use super::role;
use super::serve::serve;
use crate::sys;
use crate::wire::exit_code::PANIC;

/// Runs the worker loop in a process just forked (by the fork server, or from the
/// program when the pool was built); never returns.
pub(crate) fn enter_forked(socket: OwnedFd, lifeline: Option<OwnedFd>) -> ! {
    role::become_worker();
    // A panic that escapes the worker loop (a task's own panics are caught and
    // reported; one in decoding its input or dropping its output may not be) must not
    // unwind into the frames of the program it was forked from. It ends the worker
    // with the code the Rust runtime gives a panic that ends `main`, as it would in
    // an exec'd worker.
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(socket, lifeline)));
    exit_forked(served.unwrap_or(PANIC))
}

/// How a forked worker leaves: its stdout flushed (Rust's, and the C library's; see
/// [`sys::exit_now`]), then `_exit`, as a forked child should. `exit` would run the
/// `atexit` handlers and C library destructors of the process it was forked from,
/// once in each worker (a program's handler that removes a file or prints a summary,
/// say), and costs a forked worker's short life more page faults.
fn exit_forked(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    sys::exit_now(code)
}
