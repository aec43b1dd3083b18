//! `procpool-output`, the process's one thread that reads every pipe that is not
//! captured ([`Poller`]).

use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use super::watched::Watched;
use crate::sys::{self, Nonblocking};

/// The process's one thread for pipes that are not captured: a `poll` over all of them
/// and a wake-up pipe. It starts with the first pipe and ends when the last one ends;
/// while it runs, the wake-up pipe's write end is here.
pub(super) struct Poller {
    /// Set while the thread runs.
    wake: Option<OwnedFd>,
    /// Pipes handed over and not yet taken by the thread.
    added: Vec<Watched>,
}

static POLLER: Mutex<Poller> = Mutex::new(Poller {
    wake: None,
    added: Vec::new(),
});

impl Poller {
    fn lock() -> MutexGuard<'static, Poller> {
        POLLER.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `watched` to the thread, starting it if none runs.
    pub(super) fn watch(watched: Watched) {
        // Read only when poll says so, and never wait in a read.
        if let Some(fd) = watched.fd() {
            let _ = sys::set_nonblocking(fd);
        }
        let mut poller = Poller::lock();
        poller.added.push(watched);
        if let Some(wake) = &poller.wake {
            // A full wake-up pipe already has the thread's attention.
            let _ = sys::write_nonblocking(wake.as_fd(), &[1]);
            return;
        }
        let started = sys::nonblocking_pipe().and_then(|(wake_rx, wake_tx)| {
            thread::Builder::new()
                .name("procpool-output".into())
                .stack_size(64 * 1024)
                .spawn(move || Poller::run(wake_rx))?;
            Ok(wake_tx)
        });
        match started {
            Ok(wake_tx) => poller.wake = Some(wake_tx),
            // No thread: nothing will read these pipes; their readers say so.
            Err(_) => poller.added.clear(),
        }
    }

    fn run(wake_rx: OwnedFd) {
        let mut watched: Vec<Watched> = Vec::new();
        let served =
            panic::catch_unwind(AssertUnwindSafe(|| Poller::serve(&wake_rx, &mut watched)));
        let ended = match served {
            Ok(ended) => ended,
            Err(_) => {
                // A bug: rather than leave readers waiting, end every pipe, and let
                // the next one start a new thread.
                let mut poller = Poller::lock();
                poller.wake = None;
                watched.append(&mut poller.added);
                watched
            }
        };
        drop(wake_rx);
        drop(ended);
    }

    /// The poll loop, until the last pipe ends: returns the pipes that ended last
    /// (their readers not told yet), once the wake-up pipe is let go.
    fn serve(wake_rx: &OwnedFd, watched: &mut Vec<Watched>) -> Vec<Watched> {
        let mut buf = [0u8; 8192];
        loop {
            watched.append(&mut Poller::lock().added);
            let polled = {
                let mut fds = vec![wake_rx.as_fd()];
                // Every watched pipe is open: it is closed only when dropped.
                fds.extend(watched.iter().filter_map(Watched::fd));
                crate::sys::wait_readable(&fds)
            };
            let ready = polled.unwrap_or_else(|_| {
                // Out of memory for the poll, say: try every pipe (they do not block)
                // after a pause, rather than spin.
                thread::sleep(Duration::from_millis(10));
                vec![true; watched.len() + 1]
            });
            if ready[0] {
                while matches!(
                    sys::read_nonblocking(wake_rx.as_fd(), &mut buf),
                    Nonblocking::Bytes(1..)
                ) {}
            }
            // Read each ready pipe once; take out those that ended.
            let mut open = Vec::with_capacity(watched.len());
            let mut ended = Vec::new();
            for (mut w, &is_ready) in watched.drain(..).zip(&ready[1..]) {
                if !is_ready || w.read_some(&mut buf) {
                    open.push(w);
                } else {
                    ended.push(w);
                }
            }
            *watched = open;
            if watched.is_empty() && !ended.is_empty() {
                let mut poller = Poller::lock();
                if poller.added.is_empty() {
                    // The last pipe: the thread ends, and its wake-up pipe is closed
                    // before the last readers say they are done, so that no
                    // descriptor of ours outlives the pipes it served.
                    poller.wake = None;
                    return ended;
                }
            }
            // Dropped: each closes its pipe and tells its reader.
            drop(ended);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};

    use super::*;
    use crate::output::reader::{OutputReader, Sink};

    /// Uncaptured pipes are read by the process's one poll thread, several at once, each
    /// to its end.
    #[test]
    fn the_poll_thread_reads_every_pipe_to_its_end() {
        let mut writers = Vec::new();
        let readers: Vec<OutputReader> = (0..3)
            .map(|_| {
                let (reader, writer) = io::pipe().unwrap();
                writers.push(writer);
                OutputReader::start(Some(reader.into()), Sink::Discard)
            })
            .collect();
        for (i, writer) in writers.iter_mut().enumerate() {
            writeln!(writer, "pipe {i} line 1").unwrap();
        }
        for (i, mut writer) in writers.into_iter().enumerate() {
            write!(writer, "pipe {i} last").unwrap();
        }
        for (i, reader) in readers.iter().enumerate() {
            assert_eq!(
                reader.lines(Duration::from_secs(5)),
                [format!("pipe {i} line 1"), format!("pipe {i} last")]
            );
            assert!(reader.is_done());
        }
    }
}
