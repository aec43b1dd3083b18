//! File descriptors: adopting one a parent passed down by number, passing one to a
//! child, flags and unread bytes, and closing all but a few in a fresh fork.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};

/// Takes ownership of a descriptor the parent passed down by number (through the
/// environment) and marks it close-on-exec, so that programs a task runs do not get it.
///
/// # Errors
/// `text` is not a number, or names no open descriptor.
pub(crate) fn adopt_inherited_fd(text: &str) -> io::Result<OwnedFd> {
    let fd: RawFd = text
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{text:?}: {e}")))?;
    // Check before owning: an OwnedFd must never hold a number that is not open.
    // SAFETY: the borrow lives only for this check.
    fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_GETFD)?;
    // SAFETY: the parent made this descriptor for us alone and named it in our
    // environment, which is read once at start-up; nothing else in this process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    fcntl(owned.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(owned)
}

/// Makes `cmd`'s child inherit `fd` under the same number (it is close-on-exec here).
pub(crate) fn inherit_fd(cmd: &mut Command, fd: RawFd) {
    let hook = move || {
        // SAFETY: the caller's `fd` is open in this process when it spawns `cmd`, so
        // the forked child has it open under the same number; the borrow lives only for
        // this fcntl.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::empty()))?;
        Ok(())
    };
    // SAFETY: runs between fork and exec; one fcntl through a nix wrapper that neither
    // allocates nor locks, on the integer captured by value.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Makes reads of `fd` return `EAGAIN` instead of waiting.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// How many bytes wait unread in the pipe `fd` (`FIONREAD`).
pub(crate) fn bytes_unread(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut count: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at `count`.
    let rc = unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::FIONREAD, &mut count) };
    Errno::result(rc)?;
    Ok(usize::try_from(count).unwrap_or(0))
}

/// `fd`, or a copy of it above the standard streams' numbers if it is one of them.
pub(super) fn above_standard(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let moved = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// Closes every descriptor above 2 but `keep`: `close_range(2)` over the gaps, or, on a
/// kernel without it (before 5.9), one by one as `/proc/self/fd` lists them.
///
/// Only for a fresh single-threaded fork that never returns to the code that owned these
/// descriptors: closing them cannot pull one out from under a user.
pub(super) fn close_all_but(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&fd| fd > 2).collect();
    keep.sort_unstable();
    let mut first: RawFd = 3;
    let mut ranges = Vec::with_capacity(keep.len() + 1);
    for &fd in &keep {
        if fd > first {
            ranges.push((first as u32, fd as u32 - 1));
        }
        first = fd + 1;
    }
    ranges.push((first as u32, u32::MAX));
    for (low, high) in ranges {
        // SAFETY: close_range takes plain integers and touches no memory of ours.
        let rc = unsafe { nix::libc::syscall(nix::libc::SYS_close_range, low, high, 0) };
        match Errno::result(rc) {
            Ok(_) => {}
            // Older kernels lack it; older seccomp filters refuse it.
            Err(Errno::ENOSYS | Errno::EPERM) => return close_listed_but(&keep),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// [`close_all_but`] without `close_range(2)`.
fn close_listed_but(keep: &[RawFd]) -> io::Result<()> {
    let open: Vec<RawFd> = fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    for fd in open {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: see `close_all_but`; the directory handle used above is closed.
            let _ = nix::unistd::close(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Ok(())
}

/// What one read of a non-blocking descriptor gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nonblocking {
    /// This many bytes (0 for an interrupted read, which may be tried again).
    Bytes(usize),
    /// Nothing to read now.
    Empty,
    /// End of file, or an error that ends reading.
    Ended,
}

/// Reads once from a non-blocking descriptor into `buf`.
pub(crate) fn read_nonblocking(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Nonblocking {
    match nix::unistd::read(fd, buf) {
        Ok(0) => Nonblocking::Ended,
        Ok(n) => Nonblocking::Bytes(n),
        Err(Errno::EINTR) => Nonblocking::Bytes(0),
        Err(Errno::EAGAIN) => Nonblocking::Empty,
        Err(_) => Nonblocking::Ended,
    }
}

/// Writes `bytes` once, without waiting; `false` if not all of them went (a full pipe).
pub(crate) fn write_nonblocking(fd: BorrowedFd<'_>, bytes: &[u8]) -> bool {
    nix::unistd::write(fd, bytes).is_ok_and(|n| n == bytes.len())
}

/// A pipe whose two ends are non-blocking and close-on-exec: (read end, write end).
pub(crate) fn nonblocking_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?)
}

/// The file behind a descriptor, as (device, inode): two descriptors of one file give
/// the same.
pub(crate) fn file_id(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let stat = nix::sys::stat::fstat(fd)?;
    Ok((stat.st_dev, stat.st_ino))
}

/// Whether `e` says the other end of a socket or pipe is gone (`EPIPE`, `ECONNRESET`,
/// `ENOTCONN`), rather than that this end failed.
pub(crate) fn is_peer_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EPIPE | nix::libc::ECONNRESET | nix::libc::ENOTCONN)
    )
}

/// Whether `e` is `ECONNRESET`: the peer went with bytes of ours unread.
pub(crate) fn is_reset(e: &io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::ECONNRESET)
}
