//! Admission: the in-flight limit (backpressure) and whether the pool still takes work.

use std::sync::{Condvar, Mutex};

use crate::error::SubmitErrorKind;

#[derive(Debug)]
struct State {
    in_flight: usize,
    limit: usize,
    closed: bool,
    broken: bool,
}

/// Counts tasks between submit and outcome, and refuses new ones once closed or broken.
#[derive(Debug)]
pub(crate) struct Gate {
    state: Mutex<State>,
    freed: Condvar,
}

impl Gate {
    pub(crate) fn new(limit: usize) -> Gate {
        Gate {
            state: Mutex::new(State {
                in_flight: 0,
                limit,
                closed: false,
                broken: false,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one in-flight place; with `block`, waits for one to free up.
    pub(crate) fn acquire(&self, block: bool) -> Result<(), SubmitErrorKind> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return Err(SubmitErrorKind::Closed);
            }
            if state.broken {
                return Err(SubmitErrorKind::Broken);
            }
            if state.in_flight < state.limit {
                state.in_flight += 1;
                return Ok(());
            }
            if !block {
                return Err(SubmitErrorKind::Full);
            }
            state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub(crate) fn release(&self) {
        let mut state = self.lock();
        state.in_flight -= 1;
        drop(state);
        self.freed.notify_one();
    }

    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.freed.notify_all();
    }

    pub(crate) fn set_broken(&self) {
        self.lock().broken = true;
        self.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn limits_and_unblocks() {
        let gate = Arc::new(Gate::new(1));
        gate.acquire(false).unwrap();
        assert_eq!(gate.acquire(false), Err(SubmitErrorKind::Full));
        let waiter = {
            let gate = gate.clone();
            thread::spawn(move || gate.acquire(true))
        };
        gate.release();
        assert_eq!(waiter.join().unwrap(), Ok(()));
    }

    #[test]
    fn close_wakes_blocked_submitters() {
        let gate = Arc::new(Gate::new(1));
        gate.acquire(false).unwrap();
        let waiter = {
            let gate = gate.clone();
            thread::spawn(move || gate.acquire(true))
        };
        gate.close();
        assert_eq!(waiter.join().unwrap(), Err(SubmitErrorKind::Closed));
    }
}
