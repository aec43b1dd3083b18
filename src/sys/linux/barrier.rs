//! A memory barrier in every running thread of the system, for the slow side of an
//! asymmetric handshake: the fast side (a worker, at each task of a batch) orders its
//! store before its load with a compiler fence only, and the slow side (the parent,
//! rarely) makes up for it with `membarrier(MEMBARRIER_CMD_GLOBAL)`.

use std::io;
use std::sync::OnceLock;

use nix::errno::Errno;

/// `MEMBARRIER_CMD_QUERY` and `MEMBARRIER_CMD_GLOBAL` (linux/membarrier.h).
const QUERY: nix::libc::c_long = 0;
const GLOBAL: nix::libc::c_long = 1;

/// Waits until every thread running on the system has passed a full memory barrier:
/// once it returns, each has either seen this thread's stores made before the call,
/// or made its own earlier stores visible to this thread's loads after it. Takes a few
/// milliseconds. `Err` where the kernel offers no such barrier (before 4.3, with
/// `nohz_full`, or under a seccomp filter that refuses the call).
pub(crate) fn barrier_everywhere() -> io::Result<()> {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    let supported = *SUPPORTED.get_or_init(|| {
        // SAFETY: membarrier takes plain integers and touches no memory of ours.
        let commands = unsafe { nix::libc::syscall(nix::libc::SYS_membarrier, QUERY, 0, 0) };
        commands > 0 && commands & GLOBAL != 0
    });
    if !supported {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    }
    // SAFETY: as above.
    let rc = unsafe { nix::libc::syscall(nix::libc::SYS_membarrier, GLOBAL, 0, 0) };
    Errno::result(rc).map(drop).map_err(io::Error::from)
}
