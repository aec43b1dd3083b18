//! Linux implementation of the `sys` contract.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::thread;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{killpg, SigSet};
use nix::unistd::Pid;

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
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed. It makes two raw syscalls (fcntl, prctl)
        // through nix wrappers that neither allocate nor take locks, and touches no
        // state other than the integer `fd` it captured by value.
        unsafe {
            cmd.pre_exec(move || {
                let borrowed = BorrowedFd::borrow_raw(fd);
                fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::empty()))?;
                set_parent_death_signal()
            });
        }
    }
}

/// A buffer of `len` zero bytes, or `None` if that much memory cannot be had. Large
/// buffers come from fresh pages that are zero already, so nothing is written until the
/// buffer is filled.
pub(crate) fn zeroed_bytes(len: usize) -> Option<Vec<u8>> {
    if len == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u8>(len).ok()?;
    // SAFETY: `layout` has a non-zero size. The pointer, if not null, owns `len`
    // initialised (zero) bytes allocated by the global allocator with the alignment of
    // u8, which is exactly what `Vec::from_raw_parts` needs with capacity `len`.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout);
        if ptr.is_null() {
            return None;
        }
        Some(Vec::from_raw_parts(ptr, len, len))
    }
}

/// Sends what the socket takes now, without waiting and without `SIGPIPE`: the number
/// of bytes sent, 0 if the socket is full. `fds` ride along if anything is sent.
pub(crate) fn send_nonblocking(
    sock: BorrowedFd<'_>,
    bufs: &[io::IoSlice<'_>],
    fds: &[RawFd],
) -> io::Result<usize> {
    send_msg(sock, bufs, fds, false)
}

/// One `sendmsg` that waits for room and may send only part of `bufs`: the number of
/// bytes sent. `fds` go with the first byte.
pub(crate) fn send_blocking(
    sock: BorrowedFd<'_>,
    bufs: &[io::IoSlice<'_>],
    fds: &[RawFd],
) -> io::Result<usize> {
    send_msg(sock, bufs, fds, true)
}

fn send_msg(
    sock: BorrowedFd<'_>,
    bufs: &[io::IoSlice<'_>],
    fds: &[RawFd],
    wait: bool,
) -> io::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs = if fds.is_empty() { &[][..] } else { &rights[..] };
    let mut flags = MsgFlags::MSG_NOSIGNAL;
    if !wait {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), bufs, cmsgs, flags, None) {
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) if !wait => return Ok(0),
            Err(e) => return Err(e.into()),
            Ok(n) => return Ok(n),
        }
    }
}

/// Waits up to `timeout` for `fd` to be readable (or closed) or, with `write`, writable:
/// `(readable, writable)`, both false on timeout.
pub(crate) fn wait_ready_for(
    fd: BorrowedFd<'_>,
    write: bool,
    timeout: std::time::Duration,
) -> io::Result<(bool, bool)> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // Round up, so a wait of 0.5 ms is not a busy poll of 0 ms.
    let ms = if ms == 0 && !timeout.is_zero() { 1 } else { ms };
    let events = if write {
        PollFlags::POLLIN | PollFlags::POLLOUT
    } else {
        PollFlags::POLLIN
    };
    let mut fds = [PollFd::new(fd, events)];
    loop {
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {
                let got = fds[0].revents().unwrap_or(PollFlags::empty());
                let closed = PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
                return Ok((
                    got.intersects(PollFlags::POLLIN | closed),
                    got.contains(PollFlags::POLLOUT),
                ));
            }
        }
    }
}

/// Reads from a stream socket into `buf`, keeping any descriptors that came along in
/// `fds` (close-on-exec). `Ok(0)` at end of stream.
///
/// # Errors
/// Descriptors cut off for lack of room are an error: they are gone.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let (n, flags) = recv_keeping_fds(sock, buf, fds)?;
    if flags.contains(nix::sys::socket::MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "descriptors sent along were cut off",
        ));
    }
    Ok(n)
}

/// One `recvmsg` into `buf`: the bytes read and the message flags. Descriptors that
/// came along are added to `fds`.
fn recv_keeping_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<(usize, nix::sys::socket::MsgFlags)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    // Room for the most a frame carries, and more: what does not fit is cut off and
    // reported by the caller as an error.
    let mut space = nix::cmsg_space!([RawFd; 2 * crate::wire::codec::MAX_FDS]);
    loop {
        let mut iov = [io::IoSliceMut::new(buf)];
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            other => other?,
        };
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                // SAFETY: the kernel has just installed these descriptors in this
                // process for this message; nothing else knows their numbers.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        return Ok((msg.bytes, msg.flags));
    }
}

/// A shared memory region on a memory file (`memfd`), mapped read-write: made by one
/// process, mapped by another that received its descriptor.
#[derive(Debug)]
pub(crate) struct SharedMemory {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is owned by this value and lives until it is dropped; access to
// its bytes goes through raw pointers whose users uphold their own rules.
unsafe impl Send for SharedMemory {}

impl SharedMemory {
    /// A new zero-filled region of `len` bytes (pages are allocated when first touched)
    /// whose size is sealed: no process that gets its descriptor can shrink it (and so
    /// make another's reads fault with `SIGBUS`) or grow it.
    pub(crate) fn create_sealed(name: &str, len: usize) -> io::Result<SharedMemory> {
        use nix::fcntl::SealFlag;
        use nix::sys::memfd::{memfd_create, MFdFlags};
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
        let size = i64::try_from(len).map_err(|_| io::Error::other("region too large"))?;
        nix::unistd::ftruncate(&fd, size)?;
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(seals))?;
        SharedMemory::map(fd)
    }

    /// Maps a region another process made with [`create_sealed`]: refused unless its
    /// size is sealed and it holds at least `len` bytes.
    ///
    /// [`create_sealed`]: SharedMemory::create_sealed
    pub(crate) fn map_sealed(fd: OwnedFd, len: usize) -> io::Result<SharedMemory> {
        use nix::fcntl::SealFlag;
        let seals = SealFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GET_SEALS)?);
        if !seals.contains(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the memory's size is not sealed",
            ));
        }
        let mapped = SharedMemory::map(fd)?;
        if mapped.len() < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} bytes of memory for {len}", mapped.len()),
            ));
        }
        Ok(mapped)
    }

    /// Maps the whole memory file `fd`.
    pub(crate) fn map(fd: OwnedFd) -> io::Result<SharedMemory> {
        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        let len = usize::try_from(nix::sys::stat::fstat(&fd)?.st_size)
            .map_err(|_| io::Error::other("negative file size"))?;
        let Some(size) = std::num::NonZeroUsize::new(len) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty region"));
        };
        // SAFETY: a fresh shared mapping of a file we hold, at an address the kernel
        // picks; nothing else in this process aliases it.
        let ptr = unsafe {
            mmap(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )?
        };
        Ok(SharedMemory {
            ptr: ptr.cast(),
            len,
            fd,
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first byte; page-aligned, valid for `len()` bytes while `self` lives.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`, which nothing uses after.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr.cast(), self.len) };
    }
}

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
    // SAFETY: runs between fork and exec; one fcntl through a nix wrapper that neither
    // allocates nor locks, on the integer captured by value.
    unsafe {
        cmd.pre_exec(move || {
            fcntl(
                BorrowedFd::borrow_raw(fd),
                FcntlArg::F_SETFD(FdFlag::empty()),
            )?;
            Ok(())
        });
    }
}

/// The signal a child gets when its parent dies (`PR_SET_PDEATHSIG`): a real-time
/// signal, whose handler in a worker ([`kill_group_on_parent_death`]) kills the worker's
/// whole process group, so that what its task started in the background dies too.
/// `SIGKILL` would kill the worker alone, and before its lifeline watchdog could act.
/// Where no handler is installed (the fork server) its default action ends the process.
fn death_signal() -> nix::libc::c_int {
    nix::libc::SIGRTMAX() - 3
}

/// Asks the kernel to send [`death_signal`] to the calling process when its parent
/// (strictly: the parent thread that forked it) ends. Async-signal-safe: one prctl.
fn set_parent_death_signal() -> io::Result<()> {
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
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler
    // is an `extern "C" fn` that makes async-signal-safe calls only.
    unsafe {
        let mut action: nix::libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_parent_death as *const () as nix::libc::sighandler_t;
        let rc = nix::libc::sigaction(death_signal(), &action, std::ptr::null_mut());
        Errno::result(rc).map(drop).map_err(io::Error::from)
    }
}

/// Whether the worker's parent process is no longer the one it started under (it died,
/// and the worker was re-parented). Async-signal-safe.
pub(crate) fn parent_changed() -> bool {
    nix::unistd::getppid().as_raw() != PARENT_AT_START.load(std::sync::atomic::Ordering::SeqCst)
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
    // SAFETY: `stdout` is the C library's own stream, valid for the process's life;
    // it is read, not written. A stream whose lock we hold may be flushed and then
    // unlocked; _exit ends the process and never returns.
    unsafe {
        let out = std::ptr::addr_of!(stdout).read();
        if !out.is_null() && ftrylockfile(out) == 0 {
            libc::fflush(out);
            funlockfile(out);
        }
        libc::_exit(code)
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

// ---- The fork server: packets to and from the pool, forking, reaping ----

/// A connected pair of `SOCK_SEQPACKET` Unix sockets, close-on-exec: message boundaries
/// are kept, and descriptors can ride along with a message.
pub(crate) fn packet_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

/// Sends one packet, with copies of `fds` attached.
pub(crate) fn send_packet(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [io::IoSlice::new(bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs = if fds.is_empty() { &[][..] } else { &rights[..] };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => {
                return Err(io::Error::other(format!(
                    "sent {n} of {} bytes",
                    bytes.len()
                )))
            }
        }
    }
}

/// Receives one packet into `buf`: its length. The descriptors that came with it are
/// added to `fds`. `Ok(None)` once the other end is closed.
///
/// It allocates nothing (the fork server's loop must not, between forks: each page
/// the server writes to while children share its memory is copied, and the
/// allocator's bookkeeping is spread over several pages). The control data goes
/// through a buffer on the stack, and `fds` is the caller's (with room for them).
///
/// # Errors
/// A packet longer than `buf`, or with more descriptors than the control buffer
/// holds, is an error, not a silent truncation.
pub(crate) fn recv_packet(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<Option<usize>> {
    use nix::libc;
    /// Room for the control message of 12 descriptors (a `Spawn` brings three), aligned
    /// as `cmsghdr` must be.
    #[repr(C, align(8))]
    struct Control([u8; 64]);
    let mut control = Control([0; 64]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no vectors, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    let n = loop {
        // SAFETY: `msg` points at `iov` (over `buf`) and `control`, all alive and
        // writable for the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        match Errno::result(n) {
            Ok(n) => break n as usize,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    // SAFETY: CMSG_FIRSTHDR and CMSG_NXTHDR walk the control messages the kernel wrote
    // into `control` within `msg.msg_controllen`; SCM_RIGHTS data is an array of
    // descriptors just installed in this process for this message, owned by nobody.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "packet or its descriptors truncated",
        ));
    }
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    Ok(Some(n))
}

/// [`wait_readable`] for the fork server's loop, without allocating (see
/// [`recv_packet`]): waits on the first `count` of `fds` (at most three).
pub(crate) fn wait_readable_in_place(
    fds: [BorrowedFd<'_>; 3],
    count: usize,
) -> io::Result<[bool; 3]> {
    use nix::poll::{PollFd, PollFlags};
    let mut polls = fds.map(|fd| PollFd::new(fd, PollFlags::POLLIN));
    let polls = &mut polls[..count.min(3)];
    poll_forever(polls)?;
    let mut ready = [false; 3];
    for (r, p) in ready.iter_mut().zip(polls.iter()) {
        *r = has_event(p);
    }
    Ok(ready)
}

/// Shuts a socket down both ways: a reader blocked on it, here or at the other end,
/// sees end-of-file.
pub(crate) fn shutdown(sock: BorrowedFd<'_>) -> io::Result<()> {
    use nix::sys::socket::{shutdown, Shutdown};
    match shutdown(sock.as_raw_fd(), Shutdown::Both) {
        Ok(()) | Err(Errno::ENOTCONN) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// How many threads the calling process runs.
pub(crate) fn thread_count() -> io::Result<usize> {
    Ok(fs::read_dir("/proc/self/task")?.count())
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
        // SAFETY: sigemptyset initialises the set before sigaddset writes into it (both
        // numbers are valid signals), so the set handed to nix is initialised.
        let mask = unsafe {
            Errno::result(nix::libc::sigemptyset(raw.as_mut_ptr()))?;
            Errno::result(nix::libc::sigaddset(raw.as_mut_ptr(), nix::libc::SIGCHLD))?;
            Errno::result(nix::libc::sigaddset(raw.as_mut_ptr(), death_signal()))?;
            SigSet::from_sigset_t_unchecked(raw.assume_init())
        };
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

/// Waits until at least one of `fds` is readable or closed; says which.
pub(crate) fn wait_readable(fds: &[BorrowedFd<'_>]) -> io::Result<Vec<bool>> {
    use nix::poll::{PollFd, PollFlags};
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    poll_forever(&mut polls)?;
    Ok(polls.iter().map(has_event).collect())
}

/// `poll` without a timeout, again after an interruption.
fn poll_forever(polls: &mut [nix::poll::PollFd<'_>]) -> io::Result<()> {
    loop {
        match nix::poll::poll(polls, nix::poll::PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => return Ok(()),
        }
    }
}

/// Whether `poll` reported anything for this descriptor (data, end or error).
fn has_event(poll: &nix::poll::PollFd<'_>) -> bool {
    poll.revents().is_some_and(|r| !r.is_empty())
}

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

/// `fd`, or a copy of it above the standard streams' numbers if it is one of them.
fn above_standard(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let moved = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// Unblocks every signal and puts back the default action of every signal that has a
/// handler, as an exec would, except `SIGSEGV` and `SIGBUS`: there the Rust runtime
/// keeps its stack-overflow report, which every worker has (a handler the program put
/// there itself stays too). Ignored signals stay ignored, as across exec.
fn reset_signals() -> io::Result<()> {
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
        // SAFETY: a zeroed sigaction is a valid "default action, no flags, empty mask"
        // value; the first call only reads the current action, the second sets the
        // default.
        unsafe {
            let mut old: nix::libc::sigaction = std::mem::zeroed();
            if nix::libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if old.sa_sigaction != nix::libc::SIG_DFL && old.sa_sigaction != nix::libc::SIG_IGN {
                let default: nix::libc::sigaction = std::mem::zeroed();
                Errno::result(nix::libc::sigaction(signal, &default, std::ptr::null_mut()))?;
            }
        }
    }
    Ok(())
}

/// Closes every descriptor above 2 but `keep`: `close_range(2)` over the gaps, or, on a
/// kernel without it (before 5.9), one by one as `/proc/self/fd` lists them.
///
/// Only for a fresh single-threaded fork that never returns to the code that owned these
/// descriptors: closing them cannot pull one out from under a user.
fn close_all_but(keep: &[RawFd]) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Packets come whole, with their descriptors, into the caller's buffers; one
    /// longer than the buffer, or with more descriptors than the control buffer
    /// holds, is an error; a closed peer is `None`.
    #[test]
    fn a_packet_is_received_in_place_with_its_descriptors() {
        let (ours, theirs) = packet_pair().unwrap();
        let (pipe_r, pipe_w) = std::io::pipe().unwrap();
        let mut buf = [0u8; 16];
        let mut fds = Vec::with_capacity(4);
        send_packet(
            theirs.as_fd(),
            b"spawn",
            &[pipe_r.as_raw_fd(), pipe_w.as_raw_fd()],
        )
        .unwrap();
        let n = recv_packet(ours.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!((n, &buf[..5], fds.len()), (Some(5), &b"spawn"[..], 2));
        // The descriptors are new ones, open in this process.
        assert!(fds.iter().all(|fd| fd.as_raw_fd() != pipe_r.as_raw_fd()));
        assert!(fcntl(&fds[0], FcntlArg::F_GETFD).is_ok());

        fds.clear();
        send_packet(theirs.as_fd(), &[7; 17], &[]).unwrap();
        assert!(recv_packet(ours.as_fd(), &mut buf, &mut fds).is_err());

        let many = [pipe_r.as_raw_fd(); 13];
        send_packet(theirs.as_fd(), b"x", &many).unwrap();
        fds.clear();
        assert!(recv_packet(ours.as_fd(), &mut buf, &mut fds).is_err());

        drop(theirs);
        fds.clear();
        let closed = recv_packet(ours.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(closed, None);
    }

    /// Only the first `count` descriptors are waited on.
    #[test]
    fn waiting_in_place_looks_at_the_first_count_only() {
        let (quiet, _keep) = std::io::pipe().unwrap();
        let (loud, mut loud_w) = std::io::pipe().unwrap();
        std::io::Write::write_all(&mut loud_w, b"x").unwrap();
        let fds = [loud.as_fd(), quiet.as_fd(), loud.as_fd()];
        assert_eq!(
            wait_readable_in_place(fds, 2).unwrap(),
            [true, false, false]
        );
        assert_eq!(wait_readable_in_place(fds, 3).unwrap(), [true, false, true]);
    }
}
