//! The fork server's own loop, inside the server process.
//!
//! The server is the user's program stopped in [`init`](crate::init) before `main` has
//! started a thread; it stays single-threaded for good (no helper threads: one `poll`
//! over its socket, a signal descriptor and the parent-death lifeline), so every fork
//! copies a process in which no other thread can hold a lock.
//!
//! ```text
//! Spawn ──▶ fork ──▶ child: own group, PDEATHSIG, stderr, then the worker loop
//!                └─▶ server: Spawned{pid}
//! SIGCHLD ──▶ for each ended child: kill its group, reap it, Ended{pid, status}
//! end of stream, lifeline closed or parent-death signal ──▶ kill every worker's group,
//!                                                          reap, exit
//! ```

use std::os::fd::{AsFd, OwnedFd};

use super::forked;
use crate::sys::{self, ChildSignals, Signal};
use crate::wire::exit_code;
use crate::wire::fork_server::{self as msg, FromServer, ToServer};

/// Runs the fork server on the socket `sock` until the pool lets it go; returns the exit
/// code. Forked children never return from here: they become workers and exit.
pub(crate) fn run(sock: OwnedFd, lifeline: Option<OwnedFd>) -> i32 {
    match sys::thread_count() {
        Ok(1) => {}
        Ok(n) => {
            eprintln!(
                "procpool fork server: this process already runs {n} threads and is never \
                 forked; call procpool::init() first in main, before building an async \
                 runtime or starting threads (#[tokio::main] builds its runtime before \
                 the body of main runs; a test harness runs tests on threads: use \
                 harness = false)"
            );
            return exit_code::START;
        }
        Err(e) => {
            eprintln!("procpool fork server: cannot count this process's threads: {e}");
            return exit_code::START;
        }
    }
    let signals = match ChildSignals::new() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("procpool fork server: cannot watch for ended children: {e}");
            return exit_code::START;
        }
    };
    let me = std::process::id();
    // Between forks the loop allocates nothing: while children share the server's
    // memory, each page it writes to is copied, and every allocation writes to the
    // allocator's pages as well as its own. What it needs is made here, with room.
    let mut out = Out(Vec::with_capacity(msg::MAX_PACKET));
    if out
        .send(
            &sock,
            &FromServer::Ready {
                protocol: crate::wire::frame::PROTOCOL,
                pid: me,
            },
        )
        .is_err()
    {
        return 0;
    }
    let mut live: Vec<u32> = Vec::with_capacity(64);
    let mut buf = vec![0u8; msg::MAX_PACKET];
    let mut fds: Vec<OwnedFd> = Vec::with_capacity(16);
    let code = loop {
        let watched = [
            sock.as_fd(),
            signals.fd(),
            lifeline.as_ref().map_or(sock.as_fd(), |l| l.as_fd()),
        ];
        let ready = match sys::wait_readable_in_place(watched, 2 + usize::from(lifeline.is_some()))
        {
            Ok(ready) => ready,
            Err(e) => {
                eprintln!("procpool fork server: poll failed: {e}");
                break exit_code::PROTOCOL;
            }
        };
        let mut parent_died = false;
        if ready[1] {
            parent_died = signals.drain();
            if reap_ended(&sock, &mut out, &mut live).is_err() {
                break 0;
            }
        }
        if parent_died || ready[2] {
            // The pool's process is gone: so are we, and our workers.
            break 0;
        }
        if !ready[0] {
            continue;
        }
        fds.clear();
        let len = match sys::recv_packet(sock.as_fd(), &mut buf, &mut fds) {
            Ok(Some(len)) => len,
            Ok(None) => break 0,
            Err(e) => {
                eprintln!("procpool fork server: unreadable request: {e}");
                break exit_code::PROTOCOL;
            }
        };
        match msg::decode::<ToServer>(&buf[..len]) {
            Ok(ToServer::Spawn) if matches!(fds.len(), 2 | 3) => {
                let stdout = (fds.len() == 3).then(|| fds.pop()).flatten();
                let stderr = fds.pop();
                let socket = fds.pop().expect("two descriptors at least");
                let spawn = SpawnFds {
                    socket,
                    stderr,
                    stdout,
                };
                match fork_worker(&sock, &mut out, &mut live, spawn) {
                    Forked::Child(fds) => {
                        drop(sock);
                        become_worker(me, fds, signals, lifeline)
                    }
                    Forked::Here => {}
                    Forked::ServerGone => break 0,
                }
            }
            Ok(ToServer::Signal { pid, signal }) => {
                if live.contains(&pid) {
                    if let Ok(signal) = Signal::try_from(signal) {
                        let _ = sys::signal_group(pid, signal);
                    }
                }
            }
            Ok(request) => {
                eprintln!(
                    "procpool fork server: {request:?} came with {} descriptors",
                    fds.len()
                );
                break exit_code::PROTOCOL;
            }
            Err(e) => {
                eprintln!("procpool fork server: unreadable request: {e}");
                break exit_code::PROTOCOL;
            }
        }
    };
    // No worker outlives its server.
    for &pid in &live {
        let _ = sys::signal_group(pid, sys::KILL);
    }
    for pid in live {
        let _ = sys::reap(pid);
    }
    code
}

/// A worker's descriptors: its end of the link, and the write ends of its stderr pipe
/// and (when captured) stdout pipe.
#[derive(Debug)]
struct SpawnFds {
    socket: OwnedFd,
    stderr: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
}

enum Forked {
    /// In the new worker: its descriptors.
    Child(SpawnFds),
    /// In the server, the worker forked (or the failure reported).
    Here,
    /// In the server, which could not report: the pool is gone.
    ServerGone,
}

/// Forks a worker on `fds` and reports `Spawned` or `SpawnFailed`.
fn fork_worker(sock: &OwnedFd, out: &mut Out, live: &mut Vec<u32>, fds: SpawnFds) -> Forked {
    // SAFETY: `run` checked that this process has exactly one thread, and the server
    // never starts another.
    let answer = match unsafe { sys::fork_single_threaded() } {
        Ok(None) => return Forked::Child(fds),
        Ok(Some(pid)) => {
            sys::make_group_leader(pid);
            live.push(pid);
            drop(fds);
            FromServer::Spawned { pid }
        }
        Err(e) => FromServer::SpawnFailed {
            message: format!("fork failed: {e}"),
        },
    };
    match out.send(sock, &answer) {
        Ok(()) => Forked::Here,
        Err(_) => Forked::ServerGone,
    }
}

/// Kills the group of every child that has ended, reaps it and reports it.
fn reap_ended(sock: &OwnedFd, out: &mut Out, live: &mut Vec<u32>) -> std::io::Result<()> {
    while let Some(pid) = sys::ended_child() {
        // Still unreaped, so the group id is still this worker's: safe to kill what the
        // task left behind.
        let _ = sys::signal_group(pid, sys::KILL);
        let status = sys::reap(pid)?;
        if let Some(at) = live.iter().position(|&p| p == pid) {
            live.swap_remove(at);
        }
        out.send(sock, &FromServer::Ended { pid, status })?;
    }
    Ok(())
}

/// The buffer the server encodes its messages into, kept from one to the next.
struct Out(Vec<u8>);

impl Out {
    fn send(&mut self, sock: &OwnedFd, message: &FromServer) -> std::io::Result<()> {
        self.0.clear();
        msg::encode_into(message, &mut self.0);
        sys::send_packet(sock.as_fd(), &self.0, &[])
    }
}

/// The forked child's path from the server's loop into the worker's.
fn become_worker(
    server: u32,
    SpawnFds {
        socket,
        stderr,
        stdout,
    }: SpawnFds,
    signals: ChildSignals,
    lifeline: Option<OwnedFd>,
) -> ! {
    let settled = signals
        .release_in_child()
        .and_then(|()| sys::settle_forked_worker(server, stderr, stdout));
    if let Err(e) = settled {
        eprintln!("procpool worker: cannot settle after the fork: {e}");
        sys::exit_now(exit_code::START);
    }
    // No lifeline watchdog thread of its own: this server watches the lifeline and
    // kills every worker's group when it closes, and a worker whose server dies gets
    // the parent-death signal, whose handler kills its group. One thread less to start
    // per worker.
    drop(lifeline);
    forked::enter_forked(socket, None)
}
