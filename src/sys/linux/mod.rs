//! Linux implementation of the `sys` contract, one mechanism per file. This file only
//! declares the modules and re-exports what the contract names.

mod barrier;
mod fds;
mod lifeline;
mod limits;
mod memory;
mod poll;
mod process;
mod signals;
mod socket;

pub(crate) use self::barrier::barrier_everywhere;
pub(crate) use self::fds::{
    adopt_inherited_fd, bytes_unread, file_id, inherit_fd, is_peer_gone, is_reset,
    nonblocking_pipe, read_nonblocking, set_nonblocking, write_nonblocking, Nonblocking,
};
pub(crate) use self::lifeline::{
    end_own_group, kill_group_on_parent_death, parent_changed, watch_lifeline, Lifeline,
};
pub(crate) use self::limits::{disable_core_dumps, limit_memory, resident_bytes, thread_count};
pub(crate) use self::memory::{zeroed_bytes, SharedMemory};
pub(crate) use self::poll::{wait_readable, wait_readable_in_place, wait_ready_for};
pub(crate) use self::process::{
    ended_child, exit_now, flush_c_stdio, fork_single_threaded, has_exited, make_group_leader,
    own_process_group, reap, settle_first_worker, settle_forked_worker,
};
pub(crate) use self::signals::{signal_group, signal_name, ChildSignals, Signal, KILL, TERM};
pub(crate) use self::socket::{
    packet_pair, recv_packet, recv_with_fds, send_blocking, send_nonblocking, send_packet, shutdown,
};
