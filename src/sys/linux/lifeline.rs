//! The parent-death lifeline: a worker dies with its parent process, however the parent
//! dies. A pipe whose write end only the parent holds, watched by a thread in the worker,
//! and `PR_SET_PDEATHSIG` with a handler that kills the worker's whole process group.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Mutex;
use std::thread;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

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
    /// The process-wide lifeline, created on first use. A process forked from the one
    /// that made it without exec (a first worker, whose settling closed its
    /// descriptors) gets one of its own.
    pub(crate) fn get() -> io::Result<&'static Lifeline> {
        static LIFELINE: Mutex<Option<(u32, &'static Lifeline)>> = Mutex::new(None);
        let mut current = LIFELINE.lock().unwrap_or_else(|e| e.into_inner());
        let me = std::process::id();
        match *current {
            Some((owner, lifeline)) if owner == me => Ok(lifeline),
            _ => {
                let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
                // One per process, for the process's life.
                let lifeline: &'static Lifeline = Box::leak(Box::new(Lifeline {
                    read,
                    _write: write,
                }));
                *current = Some((me, lifeline));
                Ok(lifeline)
            }
        }
    }

    /// The descriptor number a child finds the read end under.
    pub(crate) fn child_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Makes `cmd`'s child inherit the read end, and get [`death_signal`] when the
    /// spawning thread ends, as a second line of defence.
    pub(crate) fn attach(&'static self, cmd: &mut Command) {
        let fd = self.read.as_raw_fd();
        let hook = move || {
            // SAFETY: `fd` is the lifeline's read end, which `self` (a leaked, never
            // dropped `Lifeline`) keeps open in the parent, so the forked child has it
            // open under the same number; the borrow lives only for the fcntl below.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::empty()))?;
            set_parent_death_signal()
        };
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed. It makes two raw syscalls (fcntl, prctl)
        // through nix wrappers that neither allocate nor take locks, and touches no
        // state other than the integer `fd` it captured by value.
        unsafe {
            cmd.pre_exec(hook);
        }
    }
}

/// The signal a child gets when its parent dies (`PR_SET_PDEATHSIG`): a real-time
/// signal, whose handler in a worker ([`kill_group_on_parent_death`]) kills the worker's
/// whole process group, so that what its task started in the background dies too.
/// `SIGKILL` would kill the worker alone, and before its lifeline watchdog could act.
/// Where no handler is installed (the fork server) its default action ends the process.
pub(super) fn death_signal() -> nix::libc::c_int {
    nix::libc::SIGRTMAX() - 3
}

/// Asks the kernel to send [`death_signal`] to the calling process when its parent
/// (strictly: the parent thread that forked it) ends. Async-signal-safe: one prctl.
pub(super) fn set_parent_death_signal() -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number by value and touches no memory.
    let rc = unsafe {
        nix::libc::prctl(
            nix::libc::PR_SET_PDEATHSIG,
            death_signal() as nix::libc::c_ulong,
        )
    };
    Errno::result(rc).map(drop).map_err(io::Error::from)
}

/// The worker's parent when it started, for [`kill_group_on_parent_death`]'s handler.
static PARENT_AT_START: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// In a worker: makes [`death_signal`] kill the worker's process group (grandchildren
/// too) instead of the worker alone, if the parent process is really gone.
///
/// The kernel sends the signal when the *thread* that spawned the worker ends. For an
/// exec'd worker that is its slot's thread, which ends at `join` right after it let the
/// worker go with `Shutdown`: the worker, re-parented to another thread of the same
/// process, keeps its parent pid, and must exit normally rather than kill itself. A
/// parent process that died has re-parented the worker before the signal is sent.
pub(crate) fn kill_group_on_parent_death() -> io::Result<()> {
    extern "C" fn on_parent_death(_: nix::libc::c_int) {
        // Async-signal-safe: getppid(2), an atomic load, and one kill(2) to our own
        // group, which includes us.
        if parent_changed() {
            let _ = killpg(Pid::from_raw(0), Signal::SIGKILL);
        }
    }
    PARENT_AT_START.store(
        nix::unistd::getppid().as_raw(),
        std::sync::atomic::Ordering::SeqCst,
    );
    // SAFETY: `sigaction` is a plain C struct (a handler address, a mask, flags) for
    // which all zeroes is a valid value: the default action, no flags, an empty mask.
    let mut action: nix::libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_parent_death as *const () as nix::libc::sighandler_t;
    // SAFETY: `action` is initialised and outlives the call, and a null old-action
    // pointer asks for nothing back. The handler it installs is an `extern "C" fn` that
    // makes async-signal-safe calls only.
    let rc = unsafe { nix::libc::sigaction(death_signal(), &action, std::ptr::null_mut()) };
    Errno::result(rc).map(drop).map_err(io::Error::from)
}

/// Whether the worker's parent process is no longer the one it started under (it died,
/// and the worker was re-parented). Async-signal-safe.
pub(crate) fn parent_changed() -> bool {
    nix::unistd::getppid().as_raw() != PARENT_AT_START.load(std::sync::atomic::Ordering::SeqCst)
}

/// Ends the calling worker and everything in its process group (what its tasks left
/// running in the background) at once. For a worker whose parent is gone: nobody else
/// is left to kill the group.
pub(crate) fn end_own_group() -> ! {
    let _ = killpg(Pid::from_raw(0), Signal::SIGKILL);
    // Only reached if the group could not be signalled; the worker still goes.
    std::process::abort()
}

/// Starts the worker's watchdog: when the lifeline reads end-of-file (the parent is
/// gone), the whole process group is killed at once, whatever the task is doing.
pub(crate) fn watch_lifeline(owned: OwnedFd) -> io::Result<()> {
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
            end_own_group()
        })?;
    Ok(())
}
