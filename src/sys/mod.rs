//! The only place raw syscalls live. Platform code is chosen once here; the rest of the
//! crate calls `crate::sys::*`, which is what `os` exports. Linux (`linux/`) is the first
//! (and for now only) implementation. A platform module must provide, by mechanism:
//!
//! - Signals: `Signal`, `TERM` and `KILL`; `signal_group` (a whole process group; a
//!   group already gone is not an error); `signal_name` (`SIGSEGV`, or `signal N`);
//!   `ChildSignals` (`SIGCHLD` and the parent-death signal as a readable descriptor).
//! - Processes: `fork_single_threaded` and `flush_c_stdio` before it; a group of its own
//!   per worker, `own_process_group` (exec) or `make_group_leader` (fork);
//!   `settle_forked_worker` and `settle_first_worker` (a forked child set up as an
//!   exec'd one starts); `has_exited` and `ended_child` (without reaping), `reap`;
//!   `exit_now` (`_exit` after flushing stdout).
//! - Parent death: `Lifeline` (`get`, `child_fd`, `attach`) and `watch_lifeline` (kill
//!   the group when the parent is gone); `kill_group_on_parent_death`, `parent_changed`,
//!   `end_own_group`.
//! - Limits and usage: `limit_memory` (data segment), `disable_core_dumps`,
//!   `resident_bytes` (of a live pid), `thread_count` (of this process).
//! - Ordering: `barrier_everywhere` (a memory barrier in every running thread, for
//!   the slow side of an asymmetric handshake; `Err` where the kernel has none).
//! - Memory: `SharedMemory` (`create_sealed`, `map_sealed`, `map`, `fd`, `len`, `as_ptr`:
//!   a size-sealed region shared by descriptor); `zeroed_bytes` (large zeroed buffers).
//! - Sockets, with descriptors attached: on a stream, `send_nonblocking`,
//!   `send_blocking`, `recv_with_fds`; on packets, `packet_pair`, `send_packet`,
//!   `recv_packet` (allocates nothing); `shutdown`.
//! - Readiness: `wait_ready_for` (one descriptor, with a timeout), `wait_readable`, and
//!   `wait_readable_in_place` (allocates nothing).
//! - Descriptors: `adopt_inherited_fd` (one passed down by number), `inherit_fd`,
//!   `set_nonblocking`, `bytes_unread`; `read_nonblocking` (`Nonblocking`),
//!   `write_nonblocking`, `nonblocking_pipe`; `file_id` (device and inode);
//!   `is_peer_gone` and `is_reset` (what an I/O error says of the other end).

#[cfg(target_os = "linux")]
#[path = "linux/mod.rs"]
mod os;

#[cfg(not(target_os = "linux"))]
compile_error!("procpool supports Linux only for now; see docs/ARCHITECTURE.md (sys/)");

pub(crate) use os::*;
