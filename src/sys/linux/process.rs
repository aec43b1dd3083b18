//! Worker processes: forking, process groups, settling a forked child as an exec'd
//! worker would start, waiting for children (with or without reaping), and `_exit`.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::unistd::Pid;

use super::fds::{above_standard, close_all_but};
use super::lifeline::set_parent_death_signal;
use super::signals::reset_signals;

/// Forks the calling process. Returns the child's pid in the parent and `None` in the
/// child.
///
/// # Safety
/// The caller must be the only thread of its process: the child gets a copy of memory
/// in which no other thread can be holding a lock (of the allocator, stdio, the
/// environment) that would never be released.
pub(crate) unsafe fn fork_single_threaded() -> io::Result<Option<u32>> {
    use nix::unistd::{fork, ForkResult};
    // SAFETY: forwarded to the caller, see above.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(Some(child.as_raw() as u32)),
        ForkResult::Child => Ok(None),
    }
}

/// Flushes every C stdio stream. For a program about to fork while it is the only
/// thread (no other thread can hold a stream's lock): what it had buffered is then
/// not copied into each child, to be written again there.
pub(crate) fn flush_c_stdio() {
    // SAFETY: fflush(NULL) flushes every open output stream; it takes their locks,
    // which no other thread holds in a single-threaded process.
    unsafe {
        nix::libc::fflush(std::ptr::null_mut());
    }
}

/// Puts a forked or re-executed worker into a process group of its own.
pub(crate) fn own_process_group(cmd: &mut Command) {
    cmd.process_group(0);
}

/// The fork server's half of putting a new worker into a process group of its own. The
/// child does the same ([`settle_forked_worker`]); whichever runs first wins, and the
/// group exists before the server reports the pid to the pool.
pub(crate) fn make_group_leader(pid: u32) {
    let pid = Pid::from_raw(pid as i32);
    let _ = nix::unistd::setpgid(pid, pid);
}

/// Settles a freshly forked worker: its own process group, death with the fork server
/// `server_pid` (checked against the server having died already), `stderr` as its
/// standard error and `stdout`, if given, as its standard output.
pub(crate) fn settle_forked_worker(
    server_pid: u32,
    stderr: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
) -> io::Result<()> {
    let me = Pid::from_raw(0);
    match nix::unistd::setpgid(me, me) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(e) => return Err(e.into()),
    }
    set_parent_death_signal()?;
    if nix::unistd::getppid().as_raw() as u32 != server_pid {
        return Err(io::Error::other("the fork server died while forking"));
    }
    if let Some(stderr) = stderr {
        nix::unistd::dup2_stderr(&stderr)?;
    }
    if let Some(stdout) = stdout {
        nix::unistd::dup2_stdout(&stdout)?;
    }
    Ok(())
}

/// Settles one of the pool's first workers, forked straight from the pool's process
/// (no exec), to start as an exec'd worker would: a process group of its own, the
/// parent-death signal (checked against the parent having died already), no blocked
/// signals and no handlers of the program's (but the Rust runtime's own for `SIGSEGV`
/// and `SIGBUS`, which every worker has), stdin on `/dev/null`, `stderr` as fd 2,
/// `stdout` as fd 1 (else `/dev/null` if `stdout_null`), and every other descriptor
/// but its link `socket` closed: the program's files and sockets, the other workers'
/// ends, and the lifeline's write end above all (or the lifeline would never close).
/// Returns the socket, under a number above 2.
pub(crate) fn settle_first_worker(
    parent_pid: u32,
    stderr: OwnedFd,
    stdout: Option<OwnedFd>,
    stdout_null: bool,
    socket: OwnedFd,
) -> io::Result<OwnedFd> {
    let me = Pid::from_raw(0);
    nix::unistd::setpgid(me, me)?;
    set_parent_death_signal()?;
    if nix::unistd::getppid().as_raw() as u32 != parent_pid {
        return Err(io::Error::other("the pool's process died while forking"));
    }
    reset_signals()?;
    // A program that closed its own standard streams may have had these made there.
    let socket = above_standard(socket)?;
    let stderr = above_standard(stderr)?;
    let stdout = stdout.map(above_standard).transpose()?;
    let null = above_standard(
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?
            .into(),
    )?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stderr(&stderr)?;
    match stdout {
        Some(stdout) => nix::unistd::dup2_stdout(&stdout)?,
        None if stdout_null => nix::unistd::dup2_stdout(&null)?,
        None => {}
    }
    close_all_but(&[socket.as_raw_fd()])?;
    // Closed with the rest; only the numbers are forgotten here.
    std::mem::forget((null, stderr));
    Ok(socket)
}

/// Whether our child `pid` has ended, *without* reaping it. While it stays unreaped its
/// pid, and so its process group id, cannot be reused, which makes a group kill safe.
pub(crate) fn has_exited(pid: u32) -> bool {
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(Pid::from_raw(pid as i32)), flags) {
        Ok(WaitStatus::StillAlive) => false,
        Ok(_) => true,
        // ECHILD: already reaped, which only this crate does; treat as ended.
        Err(_) => true,
    }
}

/// A child of ours that has ended, left unreaped, so that its process group id stays
/// reserved for a group kill.
pub(crate) fn ended_child() -> Option<u32> {
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    waitid(Id::All, flags)
        .ok()?
        .pid()
        .map(|p| p.as_raw() as u32)
}

/// Reaps our child `pid`, waiting for it; returns its raw wait status (as
/// `ExitStatusExt::from_raw` takes it).
pub(crate) fn reap(pid: u32) -> io::Result<i32> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(Pid::from_raw(pid as i32), None) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(WaitStatus::Exited(_, code)) => return Ok((code & 0xff) << 8),
            Ok(WaitStatus::Signaled(_, signal, core)) => {
                return Ok(signal as i32 | if core { 0x80 } else { 0 })
            }
            // Stops and continues are not exits; keep waiting.
            Ok(_) => continue,
        }
    }
}

/// Flushes the C library's stdout and ends the process with `code` at once
/// (`_exit`): no `atexit` handlers, no C library destructors, and no flush of other C
/// streams (a task's `fopen`ed file it never closed keeps what it had buffered).
///
/// The flush takes stdout's lock only if it is free: a thread a task left behind may
/// hold it, blocked in a read or a write, and the worker must not wait for it.
/// (`fflush(NULL)` would take every stream's lock, read-only ones too, waiting for
/// each.)
pub(crate) fn exit_now(code: i32) -> ! {
    use nix::libc;
    // POSIX, in glibc and musl; the libc crate does not declare them.
    extern "C" {
        static mut stdout: *mut libc::FILE;
        fn ftrylockfile(stream: *mut libc::FILE) -> libc::c_int;
        fn funlockfile(stream: *mut libc::FILE);
    }
    // Taking the address of a `static mut` makes no reference to it, and is safe.
    let stdout_ptr = std::ptr::addr_of!(stdout);
    // SAFETY: `stdout_ptr` points at the C library's own stream pointer, set before
    // `main` and valid for the process's life; it is read through the raw pointer,
    // never written.
    let out = unsafe { stdout_ptr.read() };
    if !out.is_null() {
        // SAFETY: `out` is the C library's live, non-null stdout stream;
        // ftrylockfile only tries its lock and never waits for it.
        let locked = unsafe { ftrylockfile(out) } == 0;
        if locked {
            // SAFETY: `out` is a live stream whose lock this thread now holds, so no
            // other thread is inside it while it is flushed.
            unsafe { libc::fflush(out) };
            // SAFETY: this thread took the stream's lock with ftrylockfile above and
            // gives it back once.
            unsafe { funlockfile(out) };
        }
    }
    // SAFETY: _exit takes a plain integer, touches no memory of ours and never returns;
    // skipping destructors and `atexit` handlers is the point.
    unsafe { libc::_exit(code) }
}
