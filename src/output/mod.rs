//! The parent's reading of its workers' stdout and stderr: what the user chose for
//! each stream ([`mode`]: the public [`OutputMode`](mode::OutputMode) and
//! [`OutputLine`](mode::OutputLine)), and the readers of the pipes ([`reader`]). A
//! reader keeps the crash tail ([`tail`]) and sends the bytes on ([`sink`]: forwarded
//! as they are or prefixed with whose they are ([`label`]), dropped, or captured as
//! lines); a pipe being read ([`watched`]) is read by the process's one poll thread
//! ([`poller`]) or, captured, by a thread of its own.

pub(crate) mod label;
pub(crate) mod mode;
mod poller;
pub(crate) mod reader;
mod sink;
mod tail;
mod watched;
