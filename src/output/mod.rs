//! The parent's reading of its workers' stdout and stderr: what the user chose for
//! each stream ([`mode`]: the public [`OutputMode`](mode::OutputMode) and
//! [`OutputLine`](mode::OutputLine)), and the readers that forward lines, keep the crash
//! tail and capture lines ([`reader`]).

pub(crate) mod mode;
pub(crate) mod reader;
