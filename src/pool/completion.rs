//! Waiting on several handles at once: [`as_completed`] and the watch behind
//! [`TaskHandle::wait_any`]; and being called back instead of waiting,
//! [`TaskHandle::on_complete`].
//!
//! Nothing polls. Each watched ticket is given a waker (the seam a future would use,
//! `Ticket::is_done_or_wake`) that, when the ticket's outcome is recorded, appends the
//! handle's index to one shared queue and wakes the thread blocked on it. The queue
//! holds the indices in the order the outcomes came, so the caller reads them in
//! completion order, each once, and sleeps on a condition variable in between.

use std::collections::VecDeque;
use std::fmt;
use std::iter::FusedIterator;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Wake, Waker};

use serde::de::DeserializeOwned;

use super::handle::TaskHandle;
use super::job::Ticket;
use crate::error::TaskError;

/// The indices of watched tasks whose outcomes are in, in the order they came.
#[derive(Debug, Default)]
struct Arrivals {
    ready: Mutex<VecDeque<usize>>,
    arrived: Condvar,
}

impl Arrivals {
    fn push(&self, index: usize) {
        lock(&self.ready).push_back(index);
        self.arrived.notify_one();
    }

    /// Blocks until an outcome is in, and takes its index.
    fn next(&self) -> usize {
        let mut ready = self
            .arrived
            .wait_while(lock(&self.ready), |ready| ready.is_empty())
            .unwrap_or_else(|e| e.into_inner());
        ready
            .pop_front()
            .expect("the wait ends with an index queued")
    }

    /// Watches `ticket` under `index`: queues the index now if the outcome is already
    /// in, or once it is. Returns whether it was already in.
    fn watch(self: &Arc<Self>, index: usize, ticket: &Ticket) -> bool {
        let signal = Arc::new(Signal {
            index,
            arrivals: self.clone(),
        });
        let done = ticket.is_done_or_wake(&Waker::from(signal));
        if done {
            self.push(index);
        }
        done
    }
}

/// The waker of one watched ticket. A ticket wakes its waker once, and keeps only the
/// latest: a watch that ended (an earlier `wait_any`) leaves behind a waker that, if
/// woken, queues into arrivals nobody reads, and is then dropped.
struct Signal {
    index: usize,
    arrivals: Arc<Arrivals>,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.arrivals.push(self.index);
    }
}

/// The index of the first of `tickets` to have its outcome (the first in order among
/// those that already have one); `None` if there are none.
pub(crate) fn first_done<'t>(tickets: impl IntoIterator<Item = &'t Ticket>) -> Option<usize> {
    let arrivals = Arc::new(Arrivals::default());
    let mut watched = 0;
    for (index, ticket) in tickets.into_iter().enumerate() {
        // No need to watch the rest: this one is the answer.
        if arrivals.watch(index, ticket) {
            return Some(index);
        }
        watched += 1;
    }
    (watched > 0).then(|| arrivals.next())
}

/// Yields the outcomes of `handles` as their tasks finish, each with the handle's
/// position in `handles`: the counterpart of Python's
/// `concurrent.futures.as_completed`.
///
/// ```no_run
/// # fn demo<T: procpool::Task>(pool: &procpool::Pool, tasks: Vec<T>) {
/// let handles: Vec<_> = tasks.into_iter().map(|t| pool.submit(t).unwrap()).collect();
/// for (index, outcome) in procpool::as_completed(handles) {
///     // Outcomes come as tasks finish; `index` says whose.
///     # let _ = (index, outcome);
/// }
/// # }
/// ```
///
/// Every handle is watched once, up front: the iterator then blocks, without polling,
/// until the next outcome is in, and yields each handle's outcome exactly once. Tasks
/// already finished come first, in the order of `handles`. Dropping the iterator drops
/// the handles left, which, as for any [`TaskHandle`], does not cancel their tasks.
///
/// For the outcomes of a stream of inputs, [`Pool::map_unordered`](crate::Pool::map_unordered)
/// does the same with less overhead per task; `as_completed` is for tasks submitted one
/// by one (with options of their own, say). To take only the first outcome and keep the
/// other handles, see [`TaskHandle::wait_any`].
pub fn as_completed<O, I>(handles: I) -> AsCompleted<O>
where
    O: DeserializeOwned,
    I: IntoIterator<Item = TaskHandle<O>>,
{
    let handles: Vec<Option<TaskHandle<O>>> = handles.into_iter().map(Some).collect();
    let arrivals = Arc::new(Arrivals::default());
    for (index, handle) in handles.iter().enumerate() {
        if let Some(handle) = handle {
            arrivals.watch(index, handle.ticket());
        }
    }
    AsCompleted {
        left: handles.len(),
        handles,
        arrivals,
    }
}

/// Outcomes of [`as_completed`]: `(position in the handles given, outcome)` as tasks
/// finish.
pub struct AsCompleted<O> {
    /// The handles whose outcomes have not been yielded yet, by position.
    handles: Vec<Option<TaskHandle<O>>>,
    arrivals: Arc<Arrivals>,
    left: usize,
}

impl<O: DeserializeOwned> Iterator for AsCompleted<O> {
    type Item = (usize, Result<O, TaskError>);

    fn next(&mut self) -> Option<Self::Item> {
        while self.left > 0 {
            let index = self.arrivals.next();
            // Each ticket wakes once, so each index arrives once; were one to come
            // twice, the second would find its handle gone and be passed over.
            if let Some(handle) = self.handles[index].take() {
                self.left -= 1;
                return Some((index, handle.wait()));
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<O: DeserializeOwned> ExactSizeIterator for AsCompleted<O> {}

impl<O: DeserializeOwned> FusedIterator for AsCompleted<O> {}

impl<O> fmt::Debug for AsCompleted<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// Waiting on the first of several handles lives here, beside the watch it uses.
impl<O: DeserializeOwned> TaskHandle<O> {
    /// Blocks until one of `handles` has an outcome, takes that handle out of the
    /// vector and returns its position with its outcome; `None` if `handles` is empty.
    /// The counterpart of Python's `concurrent.futures.wait(..., FIRST_COMPLETED)`.
    ///
    /// ```no_run
    /// # fn demo(mut handles: Vec<procpool::TaskHandle<u64>>) {
    /// while let Some((index, outcome)) = procpool::TaskHandle::wait_any(&mut handles) {
    ///     // `handles` no longer holds the one that finished; the others are where they
    ///     // were, those after `index` one place earlier. Submit more here if need be.
    ///     # let _ = (index, outcome);
    /// }
    /// # }
    /// ```
    ///
    /// It blocks without polling. Of handles already finished, the first in the vector
    /// is taken. The others keep running and stay in order, so the vector can be added
    /// to between calls. Each call watches the handles anew, which costs a little per
    /// handle: to take every outcome of many handles as they come, use
    /// [`as_completed`], which watches each once.
    pub fn wait_any(handles: &mut Vec<TaskHandle<O>>) -> Option<(usize, Result<O, TaskError>)> {
        let index = first_done(handles.iter().map(TaskHandle::ticket))?;
        Some((index, handles.remove(index).wait()))
    }

    /// Calls `callback` with the task's outcome once it is in, instead of waiting for
    /// it: from the pool's thread that records the outcome, or at once from this one if
    /// the task already has it. Nothing polls.
    ///
    /// ```no_run
    /// # fn demo(handle: procpool::TaskHandle<u64>) {
    /// let (done, outcomes) = std::sync::mpsc::channel();
    /// handle.on_complete(move |outcome| {
    ///     let _ = done.send(outcome);
    /// });
    /// // ... later, or on another thread:
    /// let outcome = outcomes.recv();
    /// # let _ = outcome;
    /// # }
    /// ```
    ///
    /// The callback runs on a thread that serves a worker, so it should be quick: send
    /// the outcome on a channel rather than process it there. A panic in it is caught
    /// (the panic hook still reports it); the pool goes on. Every task gets an outcome,
    /// so the callback runs once, with the pool's closing (`PoolClosed`) at the latest.
    pub fn on_complete(self, callback: impl FnOnce(Result<O, TaskError>) + Send + 'static)
    where
        O: 'static,
    {
        let ticket = self.ticket.clone();
        call_when_done(&ticket, move || callback(self.wait()));
    }
}

/// Runs `call` once `ticket` has its outcome: from the thread that records it, or at
/// once from this one if it is in already.
pub(crate) fn call_when_done(ticket: &Ticket, call: impl FnOnce() + Send + 'static) {
    let call = Arc::new(Callback(Mutex::new(Some(Box::new(call)))));
    if ticket.is_done_or_wake(&Waker::from(call.clone())) {
        call.wake();
    }
}

/// The waker a handle's [`on_complete`](TaskHandle::on_complete) leaves on its
/// ticket: it runs the callback, once.
struct Callback(Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl Wake for Callback {
    fn wake(self: Arc<Self>) {
        let call = lock(&self.0).take();
        if let Some(call) = call {
            // The user's code must not unwind through a slot's thread.
            let _ = panic::catch_unwind(AssertUnwindSafe(call));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::Duration;

    use super::*;
    use crate::pool::job::Encoded;
    use crate::wire::codec;

    fn handle() -> (Arc<Ticket>, TaskHandle<u64>) {
        let ticket = Arc::new(Ticket::new(None));
        assert!(ticket.start());
        (ticket.clone(), TaskHandle::new(ticket))
    }

    fn output(n: u64) -> Result<Encoded, TaskError> {
        let mut bytes = Vec::new();
        let fds = codec::encode_with_fds(&n, &mut bytes).unwrap();
        Ok(Encoded { bytes, fds })
    }

    #[test]
    fn a_callback_runs_once_with_the_outcome_wherever_it_is_recorded() {
        // Recorded later, on another thread: the callback runs there.
        let (ticket, pending) = handle();
        let (tx, rx) = std::sync::mpsc::channel();
        let sent = tx.clone();
        pending.on_complete(move |outcome| {
            sent.send((thread::current().id(), outcome)).unwrap();
        });
        assert!(rx.try_recv().is_err(), "called before the outcome");
        let recorder = thread::spawn(move || {
            ticket.complete(output(7));
            // A second outcome is not recorded, so not told.
            ticket.complete(Err(TaskError::Cancelled));
            thread::current().id()
        });
        let recorder = recorder.join().unwrap();
        assert_eq!(rx.recv().unwrap(), (recorder, Ok(7)));
        // Already in: the callback runs at once, here.
        let (ticket, done) = handle();
        ticket.complete(Err(TaskError::Cancelled));
        done.on_complete(move |outcome| {
            tx.send((thread::current().id(), outcome)).unwrap();
        });
        assert_eq!(
            rx.recv().unwrap(),
            (thread::current().id(), Err(TaskError::Cancelled))
        );
        assert!(rx.try_recv().is_err(), "each callback once");
    }

    #[test]
    fn a_callback_that_panics_does_not_unwind_into_the_recorder() {
        let (ticket, pending) = handle();
        pending.on_complete(|_| panic!("a callback's own bug"));
        assert!(thread::spawn(move || ticket.complete(output(1)))
            .join()
            .expect("the recording thread goes on"));
    }

    #[test]
    fn outcomes_come_in_the_order_they_are_recorded() {
        let (tickets, handles): (Vec<_>, Vec<_>) = (0..4).map(|_| handle()).unzip();
        // One is in before the watch starts; the others come later, out of order.
        tickets[3].complete(Err(TaskError::Cancelled));
        let mut outcomes = as_completed(handles);
        assert_eq!(outcomes.len(), 4);
        let recorder = thread::spawn(move || {
            for i in [2, 0, 1] {
                thread::sleep(Duration::from_millis(20));
                tickets[i].complete(output(i as u64 * 10));
            }
        });
        assert_eq!(outcomes.next(), Some((3, Err(TaskError::Cancelled))));
        assert_eq!(outcomes.next(), Some((2, Ok(20))));
        assert_eq!(outcomes.next(), Some((0, Ok(0))));
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes.next(), Some((1, Ok(10))));
        assert_eq!(outcomes.next(), None);
        assert_eq!(outcomes.next(), None);
        recorder.join().unwrap();
    }

    #[test]
    fn nothing_to_watch_ends_at_once() {
        assert_eq!(as_completed(Vec::<TaskHandle<u64>>::new()).next(), None);
        assert_eq!(TaskHandle::<u64>::wait_any(&mut Vec::new()), None);
    }

    #[test]
    fn wait_any_takes_the_first_outcome_and_keeps_the_rest_in_order() {
        let (tickets, mut handles): (Vec<_>, Vec<_>) = (0..3).map(|_| handle()).unzip();
        let tickets = Arc::new(tickets);
        let recorder = {
            let tickets = tickets.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(20));
                tickets[1].complete(output(1));
            })
        };
        assert_eq!(TaskHandle::wait_any(&mut handles), Some((1, Ok(1))));
        recorder.join().unwrap();
        assert_eq!(handles.len(), 2);
        // Watched again by the next call (the first call's wakers are stale): the
        // handle now at position 1 is the one that was at 2.
        tickets[2].complete(output(2));
        assert_eq!(TaskHandle::wait_any(&mut handles), Some((1, Ok(2))));
        // Of several already in, the first in the vector.
        tickets[0].complete(output(0));
        let (more, mut rest): (Vec<_>, Vec<_>) = (0..2).map(|_| handle()).unzip();
        more[1].complete(output(5));
        more[0].complete(output(4));
        rest.insert(0, handles.pop().unwrap());
        assert_eq!(TaskHandle::wait_any(&mut rest), Some((0, Ok(0))));
        assert_eq!(TaskHandle::wait_any(&mut rest), Some((0, Ok(4))));
        assert_eq!(TaskHandle::wait_any(&mut rest), Some((0, Ok(5))));
        assert!(rest.is_empty());
    }
}
