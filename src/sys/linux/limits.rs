//! Resource limits set on a worker, and what a process uses as `/proc` reports it.

use std::fs;
use std::io;
use std::sync::OnceLock;

use nix::sys::resource::{setrlimit, Resource};

/// Caps the calling process's data segment (heap and private anonymous mappings), so an
/// allocation bomb fails inside the worker instead of eating the machine.
pub(crate) fn limit_memory(bytes: u64) -> io::Result<()> {
    setrlimit(Resource::RLIMIT_DATA, bytes, bytes).map_err(io::Error::from)
}

/// Turns core dumps off for the calling process.
pub(crate) fn disable_core_dumps() -> io::Result<()> {
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(io::Error::from)
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

/// How many threads the calling process runs.
pub(crate) fn thread_count() -> io::Result<usize> {
    Ok(fs::read_dir("/proc/self/task")?.count())
}
