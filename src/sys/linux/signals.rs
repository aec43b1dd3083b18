//! Signals: their names, signalling a whole process group, `SIGCHLD` as a descriptor,
//! and putting back default signal actions in a child forked without exec.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::signal::{killpg, SigSet};
use nix::unistd::Pid;

use super::lifeline::death_signal;

pub(crate) use nix::sys::signal::Signal;

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

/// `SIGCHLD` as a readable descriptor, for the fork server's single-threaded poll loop.
#[derive(Debug)]
pub(crate) struct ChildSignals {
    fd: nix::sys::signalfd::SignalFd,
    old_mask: SigSet,
}

impl ChildSignals {
    /// Blocks `SIGCHLD` and the parent-death signal (so they queue on the descriptor
    /// instead) and opens the descriptor. The fork server thus learns of its parent's
    /// death in its loop, and kills its workers' groups, rather than dying on the spot.
    pub(crate) fn new() -> io::Result<ChildSignals> {
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        let old_mask = SigSet::thread_get_mask()?;
        // `Signal` has no real-time signals, so the set is built with libc.
        let mut raw = std::mem::MaybeUninit::<nix::libc::sigset_t>::uninit();
        // SAFETY: `raw` is a live, writable `sigset_t`, which sigemptyset initialises
        // (it may be uninitialised before: sigemptyset only writes it).
        let rc = unsafe { nix::libc::sigemptyset(raw.as_mut_ptr()) };
        Errno::result(rc)?;
        // SAFETY: sigemptyset initialised the set above, so sigaddset reads and writes
        // an initialised `sigset_t`; SIGCHLD is a valid signal number.
        let rc = unsafe { nix::libc::sigaddset(raw.as_mut_ptr(), nix::libc::SIGCHLD) };
        Errno::result(rc)?;
        // SAFETY: as above; `death_signal()` is a valid (real-time) signal number.
        let rc = unsafe { nix::libc::sigaddset(raw.as_mut_ptr(), death_signal()) };
        Errno::result(rc)?;
        // SAFETY: sigemptyset initialised the whole set (it succeeded, or we returned
        // above), and the sigaddset calls only changed bits of it.
        let raw = unsafe { raw.assume_init() };
        // SAFETY: `raw` was initialised by sigemptyset, as `from_sigset_t_unchecked`
        // requires, then given two valid signals with sigaddset.
        let mask = unsafe { SigSet::from_sigset_t_unchecked(raw) };
        mask.thread_block()?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(ChildSignals { fd, old_mask })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Empties the descriptor; the caller then looks for ended children itself (signals
    /// of the same kind merge, so one read may stand for several exits). Says whether
    /// the parent-death signal was among them.
    pub(crate) fn drain(&self) -> bool {
        let mut parent_died = false;
        while let Ok(Some(info)) = self.fd.read_signal() {
            parent_died |= info.ssi_signo as nix::libc::c_int == death_signal();
        }
        parent_died
    }

    /// In a forked child: closes the descriptor and gives back the signal mask the
    /// process had before, so the worker and what it runs see both signals as usual.
    pub(crate) fn release_in_child(self) -> io::Result<()> {
        self.old_mask.thread_set_mask()?;
        Ok(())
    }
}

/// Unblocks every signal and puts back the default action of every signal that has a
/// handler, as an exec would, except `SIGSEGV` and `SIGBUS`: there the Rust runtime
/// keeps its stack-overflow report, which every worker has (a handler the program put
/// there itself stays too). Ignored signals stay ignored, as across exec.
pub(super) fn reset_signals() -> io::Result<()> {
    use nix::sys::signal::{sigprocmask, SigmaskHow};
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    // Numbers the C library keeps for itself (32 and 33 with glibc) are refused and
    // skipped.
    for signal in 1..=nix::libc::SIGRTMAX() {
        if [
            nix::libc::SIGKILL,
            nix::libc::SIGSTOP,
            nix::libc::SIGSEGV,
            nix::libc::SIGBUS,
        ]
        .contains(&signal)
        {
            continue;
        }
        // SAFETY: `sigaction` is a plain C struct (a handler address, a mask, flags) for
        // which all zeroes is a valid value; here only a place for the call below to
        // write into.
        let mut old: nix::libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: with a null new action the call only reads the current one, into
        // `old`, which is live and writable for the call.
        if unsafe { nix::libc::sigaction(signal, std::ptr::null(), &mut old) } != 0 {
            continue;
        }
        if old.sa_sigaction != nix::libc::SIG_DFL && old.sa_sigaction != nix::libc::SIG_IGN {
            // SAFETY: all zeroes is a valid `sigaction`: the default action (SIG_DFL is
            // 0), no flags, an empty mask.
            let default: nix::libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: `default` is initialised and outlives the call; it sets the
            // default action, which runs no code of ours. A null old-action pointer
            // asks for nothing back.
            let rc = unsafe { nix::libc::sigaction(signal, &default, std::ptr::null_mut()) };
            Errno::result(rc)?;
        }
    }
    Ok(())
}
