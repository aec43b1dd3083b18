//! The only place raw syscalls live: process groups, signals, the parent-death lifeline,
//! resource limits and `/proc` reads.
//!
//! Platform code is chosen once here; the rest of the crate calls the small contract that
//! `os` exports. Linux is the first (and for now only) implementation.

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod os;

#[cfg(not(target_os = "linux"))]
compile_error!("procpool supports Linux only for now; see docs/ARCHITECTURE.md (sys/)");

pub(crate) use os::*;
