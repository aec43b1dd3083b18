//! The crash tail of a worker's stderr: the last lines a crash report quotes, the first
//! line (which says why a start failed), and whether a line said that an allocation
//! failed. The [`OutputReader`](super::reader::OutputReader) of the pipe keeps it.

use std::collections::VecDeque;

/// How many stderr lines a crash report keeps.
const TAIL_LINES: usize = 20;
/// Longest line kept in the tail, in bytes; the rest of a longer line is dropped.
pub(super) const TAIL_LINE_BYTES: usize = 1000;

#[derive(Debug, Default)]
pub(super) struct Tail {
    pub(super) lines: VecDeque<String>,
    /// The first line since the last clear: when a worker dies at start-up it usually
    /// says why there, before any backtrace.
    pub(super) first: Option<String>,
    pub(super) partial: Vec<u8>,
    pub(super) closed: bool,
    pub(super) allocation_failed: bool,
}

impl Tail {
    pub(super) fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.finish_line();
            } else if self.partial.len() < TAIL_LINE_BYTES {
                self.partial.push(b);
            }
        }
    }

    pub(super) fn finish_line(&mut self) {
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        if line.starts_with("memory allocation of") {
            self.allocation_failed = true;
        }
        if self.first.is_none() && !line.trim().is_empty() {
            self.first = Some(line.clone());
        }
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

/// A reader's tail as the threads that read its pipe share it: the lines, and the
/// condition that says when the pipe has closed.
pub(super) type SharedTail = std::sync::Arc<(std::sync::Mutex<Tail>, std::sync::Condvar)>;

pub(super) fn lock(shared: &SharedTail) -> std::sync::MutexGuard<'_, Tail> {
    shared.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// The pipe has closed: the unfinished line ends, and whoever waits is told.
pub(super) fn close(shared: &SharedTail) {
    let mut tail = lock(shared);
    if !tail.partial.is_empty() {
        tail.finish_line();
    }
    tail.closed = true;
    shared.1.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_and_bounds_their_length() {
        let mut tail = Tail::default();
        for i in 0..50 {
            tail.push(format!("line {i}\n").as_bytes());
        }
        tail.push(&vec![b'x'; 5000]);
        tail.push(b"\n");
        assert_eq!(tail.lines.len(), TAIL_LINES);
        assert_eq!(tail.lines[0], "line 31");
        assert_eq!(tail.lines.back().unwrap().len(), TAIL_LINE_BYTES);
        assert!(!tail.allocation_failed);
    }

    #[test]
    fn an_allocation_failure_is_remembered_past_the_tail() {
        let mut tail = Tail::default();
        tail.push(b"memory allocation of 1073741824 bytes failed\n");
        for i in 0..100 {
            tail.push(format!("backtrace frame {i}\n").as_bytes());
        }
        assert!(tail.allocation_failed);
        assert!(tail.lines.iter().all(|l| !l.starts_with("memory")));
        assert_eq!(
            tail.first.as_deref(),
            Some("memory allocation of 1073741824 bytes failed")
        );
    }
}
