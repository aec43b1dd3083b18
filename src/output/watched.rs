//! A pipe being read ([`Watched`]): one read at a time into its sink and its reader's
//! tail, by whichever thread holds it, and, once dropped, the pipe closed and the
//! reader told.

use std::os::fd::{AsFd, OwnedFd};

use super::sink::Sink;
use super::tail::{self, SharedTail};
use crate::sys::{self, Nonblocking};

/// A pipe being read, where its bytes go, and the reader that keeps its tail. Dropped
/// (at end-of-file, or by a panic in the thread reading it), it closes the pipe and then
/// tells the reader, so no reader waits for a pipe nobody reads.
pub(super) struct Watched {
    pub(super) pipe: Option<OwnedFd>,
    pub(super) sink: Sink,
    pub(super) tail: SharedTail,
}

impl Watched {
    /// One read: `false` at end-of-file (or an error other than an interruption or
    /// an empty non-blocking pipe).
    pub(super) fn read_some(&mut self, buf: &mut [u8]) -> bool {
        self.read_once(buf) != Read::Ended
    }

    pub(super) fn read_once(&mut self, buf: &mut [u8]) -> Read {
        let Some(pipe) = &self.pipe else {
            return Read::Ended;
        };
        match self.sink.read(|| sys::read_nonblocking(pipe.as_fd(), buf)) {
            Nonblocking::Ended => Read::Ended,
            Nonblocking::Empty => Read::Empty,
            Nonblocking::Bytes(0) => Read::Bytes,
            Nonblocking::Bytes(n) => {
                self.sink.write(&buf[..n]);
                tail::lock(&self.tail).push(&buf[..n]);
                Read::Bytes
            }
        }
    }

    pub(super) fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.pipe.as_ref().map(AsFd::as_fd)
    }
}

/// What one read of a pipe found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Read {
    /// Bytes (or an interruption): read again.
    Bytes,
    /// Nothing yet: the pipe is empty and still open for writing.
    Empty,
    /// End-of-file, or an error that ends the pipe.
    Ended,
}

impl Drop for Watched {
    fn drop(&mut self) {
        // The pipe is closed before the reader says it is done, so that a caller
        // waiting for that (`wait_done`) finds the descriptor gone too.
        drop(self.pipe.take());
        self.sink.finish();
        tail::close(&self.tail);
    }
}
