//! Linux implementation of the `sys` contract.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::OnceLock;
use std::thread;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Sends `signal` to every process in the group led by `pgid`.
///
/// A group that no longer exists is not an error: the goal (nobody left to signal) holds.
pub(crate) fn signal_group(pgid: u32, signal: Signal) -> io::Result<()> {
    match killpg(Pid::from_raw(pgid as i32), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `SIGTERM`, for a polite stop.
pub(crate) const TERM: Signal = Signal::SIGTERM;
/// `SIGKILL`, for the stop that cannot be refused.
pub(crate) const KILL: Signal = Signal::SIGKILL;

/// The conventional name of a signal number (`SIGSEGV`), or `signal N` when unknown.
pub(crate) fn signal_name(number: i32) -> String {
    Signal::try_from(number)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {number}"))
}

/// Resident set size of a live process, in bytes; `None` once it is gone.
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map_or(4096, |v| v as u64)
    })
}

/// Caps the calling process's data segment (heap and private anonymous mappings), so an
/// allocation bomb fails inside the worker instead of eating the machine.
pub(crate) fn limit_memory(bytes: u64) -> io::Result<()> {
    setrlimit(Resource::RLIMIT_DATA, bytes, bytes).map_err(io::Error::from)
}

/// Turns core dumps off for the calling process.
pub(crate) fn disable_core_dumps() -> io::Result<()> {
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(io::Error::from)
}

/// The parent's half of the parent-death lifeline.
///
/// One pipe per parent process: the parent holds the write end (close-on-exec, so no
/// child ever inherits it) and every worker inherits the read end. When the parent dies,
/// however it dies, the kernel closes the write end and each worker's watchdog thread
/// reads end-of-file and kills its own process group, busy or not. Unlike
/// `PR_SET_PDEATHSIG`, this does not depend on which parent *thread* spawned the worker.
#[derive(Debug)]
pub(crate) struct Lifeline {
    read: OwnedFd,
    _write: OwnedFd,
}

impl Lifeline {
    /// The process-wide lifeline, created on first use.
    pub(crate) fn get() -> io::Result<&'static Lifeline> {
        static LIFELINE: OnceLock<Lifeline> = OnceLock::new();
        if let Some(l) = LIFELINE.get() {
            return Ok(l);
        }
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        Ok(LIFELINE.get_or_init(|| Lifeline {
            read,
            _write: write,
        }))
    }

    /// The descriptor number a child finds the read end under.
    pub(crate) fn child_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Makes `cmd`'s child inherit the read end, and die with the spawning thread as a
    /// second line of defence.
    pub(crate) fn attach(&'static self, cmd: &mut Command) {
        let fd = self.read.as_raw_fd();
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed. It makes two raw syscalls (fcntl, prctl)
        // through nix wrappers that neither allocate nor take locks, and touches no
        // state other than the integer `fd` it captured by value.
        unsafe {
            cmd.pre_exec(move || {
                let borrowed = BorrowedFd::borrow_raw(fd);
                fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::empty()))?;
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                Ok(())
            });
        }
    }
}

/// Starts the worker's watchdog: when the lifeline at `fd` reads end-of-file (the parent
/// is gone), the whole process group is killed at once, whatever the task is doing.
pub(crate) fn watch_lifeline(fd: RawFd) -> io::Result<()> {
    // SAFETY: `fd` was handed to us by the parent through the environment and nothing
    // else in this process owns it; a bad number fails the fcntl check below instead.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    fcntl(owned.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    thread::Builder::new()
        .name("procpool-lifeline".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut buf = [0u8; 16];
            loop {
                match nix::unistd::read(owned.as_fd(), &mut buf) {
                    Err(Errno::EINTR) => continue,
                    Ok(n) if n > 0 => continue,
                    _ => break,
                }
            }
            // The parent is gone: take the task (and anything it spawned) with us.
            let _ = killpg(Pid::from_raw(0), Signal::SIGKILL);
            std::process::abort();
        })?;
    Ok(())
}

/// Puts a forked or re-executed worker into a process group of its own.
pub(crate) fn own_process_group(cmd: &mut Command) {
    cmd.process_group(0);
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
