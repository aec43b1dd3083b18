//! A queued task and its ticket: the one place its outcome is decided, exactly once.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::Sender;

use super::gate::Gate;
use crate::error::TaskError;

/// The raw outcome of a task: its encoded output, or why there is none.
pub(crate) type RawOutcome = Result<Vec<u8>, TaskError>;

/// A task on its way to a worker: the ready-to-send `Run` frame and its ticket.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) frame: Vec<u8>,
    pub(crate) attempts: u32,
    pub(crate) ticket: Arc<Ticket>,
}

#[derive(Debug)]
enum State {
    Queued,
    Running,
    CancelRequested,
    /// `None` once the outcome was taken by the handle or sent to a map.
    Done(Option<RawOutcome>),
}

/// Where a map wants outcomes delivered instead of waiting on the ticket.
#[derive(Debug)]
pub(crate) struct Sink {
    pub(crate) index: usize,
    pub(crate) tx: Sender<(usize, RawOutcome)>,
}

/// The shared state of one submitted task.
#[derive(Debug)]
pub(crate) struct Ticket {
    state: Mutex<State>,
    done: Condvar,
    sink: Option<Sink>,
    gate: Option<Arc<Gate>>,
}

impl Ticket {
    pub(crate) fn new(sink: Option<Sink>, gate: Option<Arc<Gate>>) -> Ticket {
        Ticket {
            state: Mutex::new(State::Queued),
            done: Condvar::new(),
            sink,
            gate,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the task as running; `false` if it already has an outcome (cancelled).
    pub(crate) fn start(&self) -> bool {
        let mut state = self.lock();
        match *state {
            State::Queued => {
                *state = State::Running;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn is_cancel_requested(&self) -> bool {
        matches!(*self.lock(), State::CancelRequested)
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(*self.lock(), State::Done(_))
    }

    /// Records the outcome. Only the first call counts; it returns whether it did.
    pub(crate) fn complete(&self, outcome: RawOutcome) -> bool {
        self.settle(self.lock(), outcome)
    }

    /// Records the outcome while holding the lock that decided it, so no other party
    /// (a supervisor starting the job, a second cancel) can slip in between.
    fn settle(&self, mut state: MutexGuard<'_, State>, outcome: RawOutcome) -> bool {
        if matches!(*state, State::Done(_)) {
            return false;
        }
        *state = match &self.sink {
            Some(sink) => {
                // A map that was dropped no longer listens; its outcome has nowhere to go.
                let _ = sink.tx.send((sink.index, outcome));
                State::Done(None)
            }
            None => State::Done(Some(outcome)),
        };
        // The place is free before anyone learns of the outcome, so a caller woken by
        // it can submit again at once.
        if let Some(gate) = &self.gate {
            gate.release();
        }
        drop(state);
        self.done.notify_all();
        true
    }

    /// Cancels the task: at once if still queued, by killing its worker if running.
    /// Returns `false` when the task already had an outcome.
    pub(crate) fn cancel(&self) -> bool {
        let mut state = self.lock();
        match *state {
            State::Queued => self.settle(state, Err(TaskError::Cancelled)),
            State::Running => {
                *state = State::CancelRequested;
                true
            }
            State::CancelRequested => true,
            State::Done(_) => false,
        }
    }

    /// Blocks for the outcome and takes it.
    pub(crate) fn wait(&self) -> RawOutcome {
        let state = self.lock();
        let mut state = self
            .done
            .wait_while(state, |s| !matches!(s, State::Done(_)))
            .unwrap_or_else(|e| e.into_inner());
        take(&mut state)
    }

    /// Waits up to `timeout`; takes the outcome if it came.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> Option<RawOutcome> {
        let state = self.lock();
        let (mut state, _) = self
            .done
            .wait_timeout_while(state, timeout, |s| !matches!(s, State::Done(_)))
            .unwrap_or_else(|e| e.into_inner());
        matches!(*state, State::Done(_)).then(|| take(&mut state))
    }
}

fn take(state: &mut State) -> RawOutcome {
    match state {
        State::Done(outcome) => outcome
            .take()
            .expect("a handle takes its outcome once (wait consumes the handle)"),
        _ => unreachable!("take is called on finished tickets only"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_outcome_counts() {
        let ticket = Ticket::new(None, None);
        assert!(ticket.start());
        assert!(ticket.complete(Ok(vec![1])));
        assert!(!ticket.complete(Err(TaskError::PoolClosed)));
        assert_eq!(ticket.wait(), Ok(vec![1]));
    }

    #[test]
    fn cancel_while_queued_is_final_and_the_worker_skips_it() {
        let gate = Arc::new(Gate::new(1));
        gate.acquire(false).unwrap();
        let ticket = Ticket::new(None, Some(gate.clone()));
        assert!(ticket.cancel());
        assert!(!ticket.start());
        assert!(!ticket.cancel());
        assert_eq!(ticket.wait(), Err(TaskError::Cancelled));
        // The in-flight place came back.
        gate.acquire(false).unwrap();
    }

    #[test]
    fn cancel_while_running_asks_the_supervisor() {
        let ticket = Ticket::new(None, None);
        assert!(ticket.start());
        assert!(ticket.cancel());
        assert!(ticket.is_cancel_requested());
        assert!(ticket.wait_timeout(Duration::from_millis(1)).is_none());
    }
}
