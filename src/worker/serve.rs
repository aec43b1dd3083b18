//! The worker's main loop: runs inside the worker process, one task at a time.
//!
//! It reads a frame, runs the named task (panics caught), writes one response frame, and
//! repeats until the parent says `Shutdown` or goes away. A watchdog thread on the
//! parent-death lifeline kills the process group if the parent dies mid-task.

use std::collections::{HashSet, VecDeque};
use std::env;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::launch::{ENV_LIFELINE, ENV_SERVER, ENV_ZYGOTE};
use crate::link::WorkerEnd;
use crate::sys;
use crate::task;
use crate::wire::frame::{self, Request, Response};
use crate::worker::{context, panics};

/// Exit code of a worker that could not reach its parent or set itself up.
pub(crate) const EXIT_START: i32 = 70;
/// Exit code of a worker that received a frame it could not read.
pub(crate) const EXIT_PROTOCOL: i32 = 76;

static IN_WORKER: AtomicBool = AtomicBool::new(false);

/// Whether this process is serving as a worker (so a pool built inside a task is a
/// nested pool, not a missing `init()`).
pub(crate) fn is_worker() -> bool {
    IN_WORKER.load(Ordering::Relaxed)
}

/// Turns this process into a worker (or a fork server) if it was started as one;
/// otherwise returns.
pub(crate) fn enter_if_worker() {
    let socket = env::var(ENV_SERVER).ok();
    let fork_server = env::var(ENV_ZYGOTE).ok();
    if socket.is_none() && fork_server.is_none() {
        return;
    }
    if IN_WORKER.swap(true, Ordering::SeqCst) {
        return;
    }
    // Read once, then gone: a program a task starts must not mistake itself for a
    // worker. This runs first thing in main, before the worker starts any thread.
    let lifeline = env::var(ENV_LIFELINE).ok();
    for var in [ENV_SERVER, ENV_ZYGOTE, ENV_LIFELINE] {
        env::remove_var(var);
    }
    let lifeline = match lifeline.as_deref().map(sys::adopt_inherited_fd).transpose() {
        Ok(lifeline) => lifeline,
        Err(e) => {
            eprintln!("procpool worker: cannot take the parent lifeline {lifeline:?}: {e}");
            std::process::exit(EXIT_START);
        }
    };
    let code = match (fork_server, socket) {
        (Some(sock), _) => match sys::adopt_inherited_fd(&sock) {
            Ok(sock) => crate::launch::zygote::run(sock, lifeline),
            Err(e) => {
                eprintln!("procpool fork server: cannot take its socket {sock:?}: {e}");
                EXIT_START
            }
        },
        (None, Some(socket)) => match sys::adopt_inherited_fd(&socket) {
            Ok(socket) => serve(socket, lifeline),
            Err(e) => {
                eprintln!("procpool worker: cannot take its socket {socket:?}: {e}");
                EXIT_START
            }
        },
        (None, None) => unreachable!("checked above"),
    };
    exit(code)
}

/// Runs the worker loop in a process just forked by the fork server; never returns.
pub(crate) fn enter_forked(socket: OwnedFd, lifeline: Option<OwnedFd>) -> ! {
    IN_WORKER.store(true, Ordering::SeqCst);
    exit(serve(socket, lifeline))
}

fn exit(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

fn serve(socket: OwnedFd, lifeline: Option<OwnedFd>) -> i32 {
    if let Some(lifeline) = lifeline {
        if let Err(e) = sys::watch_lifeline(lifeline) {
            eprintln!("procpool worker: cannot watch the parent lifeline: {e}");
            return EXIT_START;
        }
    }
    if let Err(e) = sys::kill_group_on_parent_death() {
        eprintln!("procpool worker: cannot arm the parent-death signal: {e}");
        return EXIT_START;
    }
    panics::install_hook();
    let mut link = match WorkerEnd::new(socket) {
        Ok(link) => link,
        Err(e) => {
            eprintln!("procpool worker: cannot use its socket: {e}");
            return EXIT_START;
        }
    };
    // Frames read but not yet acted on, and tasks the parent asked to skip. Before a
    // task starts, every frame that has arrived is read, so a `Skip` sent while the task
    // waited here is seen in time.
    let mut inbox: VecDeque<(Request, usize, Vec<u8>)> = VecDeque::new();
    let mut skips: HashSet<u64> = HashSet::new();
    loop {
        if inbox.is_empty() {
            let Some(frame) = link.recv() else {
                return 0;
            };
            if let Err(code) = take_in(frame, &mut inbox, &mut skips) {
                return code;
            }
        }
        loop {
            match link.try_recv() {
                Some(Some(frame)) => {
                    if let Err(code) = take_in(frame, &mut inbox, &mut skips) {
                        return code;
                    }
                }
                Some(None) => break,
                None => return 0,
            }
        }
        let Some((request, payload_len, mut frame)) = inbox.pop_front() else {
            continue;
        };
        match request {
            Request::Setup {
                memory_limit,
                core_dumps,
                has_context,
            } => {
                if let Err(e) = setup(memory_limit, core_dumps) {
                    eprintln!("procpool worker: set-up failed: {e}");
                    return EXIT_START;
                }
                if has_context {
                    frame.truncate(payload_len);
                    context::set(frame);
                }
                if link.send(&frame::header_only(&Response::Ready)).is_err() {
                    return 0;
                }
            }
            Request::Run { id, .. } if skips.remove(&id) => {
                if link
                    .send(&frame::header_only(&Response::Skipped { id }))
                    .is_err()
                {
                    return 0;
                }
            }
            Request::Run { id, task } => {
                let mut out = Vec::new();
                let header = match task::run(&task, &frame[..payload_len], &mut out) {
                    Ok(()) => Response::Output { id },
                    Err(failure) => {
                        out.clear();
                        Response::Failure { id, failure }
                    }
                };
                drop(frame);
                let _ = std::io::stdout().flush();
                if link.send(&frame::seal(out, &header)).is_err() {
                    return 0;
                }
            }
            Request::Shutdown => return 0,
            // Taken out of the stream as they arrive (see `take_in`).
            Request::Skip { .. } => {}
        }
    }
}

/// Decodes a frame from the parent: a `Skip` is noted at once, anything else queued.
/// `Err` holds the exit code for a frame that cannot be read.
fn take_in(
    frame: Vec<u8>,
    inbox: &mut VecDeque<(Request, usize, Vec<u8>)>,
    skips: &mut HashSet<u64>,
) -> Result<(), i32> {
    match frame::decode::<Request>(&frame) {
        Ok((Request::Skip { id }, _)) => {
            skips.insert(id);
            Ok(())
        }
        Ok((request, payload_len)) => {
            inbox.push_back((request, payload_len, frame));
            Ok(())
        }
        Err(e) => {
            eprintln!("procpool worker: unreadable frame from the parent: {e}");
            Err(EXIT_PROTOCOL)
        }
    }
}

fn setup(memory_limit: Option<u64>, core_dumps: bool) -> std::io::Result<()> {
    if !core_dumps {
        sys::disable_core_dumps()?;
    }
    if let Some(limit) = memory_limit {
        sys::limit_memory(limit)?;
    }
    Ok(())
}
