//! Where a process learns its role: [`enter_if_worker`] (behind
//! [`init`](crate::init)) turns a process the pool started into a worker or a fork
//! server.

use std::env;
use std::io::Write;

use super::serve::serve;
use super::{fork_server, role};
use crate::sys;
use crate::wire::env::{FORK_SERVER, LIFELINE, WORKER};
use crate::wire::exit_code::START;

/// Turns this process into a worker (or a fork server) if it was started as one;
/// otherwise returns.
pub(crate) fn enter_if_worker() {
    let socket = env::var(WORKER).ok();
    let fork_server = env::var(FORK_SERVER).ok();
    if socket.is_none() && fork_server.is_none() {
        return;
    }
    if role::become_worker() {
        return;
    }
    // Read once, then gone: a program a task starts must not mistake itself for a
    // worker. This runs first thing in main, before the worker starts any thread.
    let lifeline = env::var(LIFELINE).ok();
    for var in [WORKER, FORK_SERVER, LIFELINE] {
        env::remove_var(var);
    }
    let lifeline = match lifeline.as_deref().map(sys::adopt_inherited_fd).transpose() {
        Ok(lifeline) => lifeline,
        Err(e) => {
            eprintln!("procpool worker: cannot take the parent lifeline {lifeline:?}: {e}");
            std::process::exit(START);
        }
    };
    let code = match (fork_server, socket) {
        (Some(sock), _) => match sys::adopt_inherited_fd(&sock) {
            Ok(sock) => fork_server::run(sock, lifeline),
            Err(e) => {
                eprintln!("procpool fork server: cannot take its socket {sock:?}: {e}");
                START
            }
        },
        (None, Some(socket)) => match sys::adopt_inherited_fd(&socket) {
            Ok(socket) => serve(socket, lifeline),
            Err(e) => {
                eprintln!("procpool worker: cannot take its socket {socket:?}: {e}");
                START
            }
        },
        (None, None) => unreachable!("checked above"),
    };
    exit(code)
}

fn exit(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}
