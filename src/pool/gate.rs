//! Admission: the in-flight limit (backpressure) and whether the pool still takes work.
//!
//! A thread waits for a place on a condition variable; a future (`Turn`) waits in a
//! queue of wakers, the first of which each freed place wakes.

#[cfg(feature = "async")]
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
#[cfg(feature = "async")]
use std::task::{Poll, Waker};

use crate::error::SubmitErrorKind;

#[derive(Debug)]
struct State {
    in_flight: usize,
    limit: usize,
    closed: bool,
    broken: bool,
    /// Futures waiting for a place, first come first: each by its turn's number.
    #[cfg(feature = "async")]
    queue: VecDeque<(u64, Waker)>,
    /// The number the next turn to queue gets.
    #[cfg(feature = "async")]
    next_turn: u64,
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
                #[cfg(feature = "async")]
                queue: VecDeque::new(),
                #[cfg(feature = "async")]
                next_turn: 0,
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
            match state.admit() {
                Err(SubmitErrorKind::Full) if block => {}
                admitted => return admitted,
            }
            state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub(crate) fn release(&self) {
        let mut state = self.lock();
        state.in_flight -= 1;
        #[cfg(feature = "async")]
        let next = state.queue.pop_front();
        drop(state);
        self.freed.notify_one();
        #[cfg(feature = "async")]
        if let Some((_, waker)) = next {
            waker.wake();
        }
    }

    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake_all();
    }

    pub(crate) fn set_broken(&self) {
        self.lock().broken = true;
        self.wake_all();
    }

    /// Wakes every waiter, thread or future, to find the gate closed or broken.
    fn wake_all(&self) {
        #[cfg(feature = "async")]
        let queue = std::mem::take(&mut self.lock().queue);
        self.freed.notify_all();
        #[cfg(feature = "async")]
        for (_, waker) in queue {
            waker.wake();
        }
    }
}

impl State {
    /// Takes a place if the gate lets one be taken now.
    fn admit(&mut self) -> Result<(), SubmitErrorKind> {
        if self.closed {
            return Err(SubmitErrorKind::Closed);
        }
        if self.broken {
            return Err(SubmitErrorKind::Broken);
        }
        if self.in_flight < self.limit {
            self.in_flight += 1;
            return Ok(());
        }
        Err(SubmitErrorKind::Full)
    }
}

/// A future's wait for an in-flight place: its number in the gate's queue once it has
/// had to queue. Dropped while queued, it leaves the queue; dropped after it was woken
/// for a place it did not take, it hands the wake-up on to the next in the queue, so a
/// future given up on (a `select!` arm that lost, a timeout) holds no place and keeps
/// no other waiting.
#[cfg(feature = "async")]
#[derive(Debug)]
pub(crate) struct Turn<'g> {
    gate: &'g Gate,
    number: Option<u64>,
}

#[cfg(feature = "async")]
impl<'g> Turn<'g> {
    pub(crate) fn new(gate: &'g Gate) -> Turn<'g> {
        Turn { gate, number: None }
    }

    /// Takes a place if there is one (`Ready(Ok)`), or says why none will come
    /// (`Ready(Err)`: closed or broken, never `Full`); otherwise queues, or stays
    /// queued, with `waker` to be woken when a place frees up. After `Ready` the turn is
    /// out of the queue and may wait again.
    pub(crate) fn poll(&mut self, waker: &Waker) -> Poll<Result<(), SubmitErrorKind>> {
        let mut state = self.gate.lock();
        let admitted = state.admit();
        if admitted == Err(SubmitErrorKind::Full) {
            let queued = self
                .number
                .and_then(|number| state.queue.iter_mut().find(|(n, _)| *n == number));
            match queued {
                Some((_, kept)) => {
                    if !kept.will_wake(waker) {
                        kept.clone_from(waker);
                    }
                }
                // Not queued yet, or woken for a place someone else took first: to the
                // back of the queue.
                None => {
                    let number = state.next_turn;
                    state.next_turn += 1;
                    state.queue.push_back((number, waker.clone()));
                    self.number = Some(number);
                }
            }
            return Poll::Pending;
        }
        if let Some(number) = self.number.take() {
            state.queue.retain(|(n, _)| *n != number);
        }
        Poll::Ready(admitted)
    }
}

#[cfg(feature = "async")]
impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let Some(number) = self.number else {
            return;
        };
        let mut state = self.gate.lock();
        if let Some(at) = state.queue.iter().position(|(n, _)| *n == number) {
            state.queue.remove(at);
            return;
        }
        // Woken for a place and gone without taking it: the next in the queue gets the
        // wake-up instead, if the place is still free.
        let next = if state.in_flight < state.limit {
            state.queue.pop_front()
        } else {
            None
        };
        drop(state);
        if let Some((_, waker)) = next {
            waker.wake();
        }
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

#[cfg(all(test, feature = "async"))]
mod turn_tests {
    use super::*;
    use crate::pool::wakeup::counting::waker;

    fn queued(gate: &Gate) -> usize {
        gate.lock().queue.len()
    }

    #[test]
    fn a_turn_takes_a_free_place_at_once_and_queues_when_full() {
        let gate = Gate::new(1);
        let (count, w) = waker();
        let mut first = Turn::new(&gate);
        assert_eq!(first.poll(&w), Poll::Ready(Ok(())));
        let mut second = Turn::new(&gate);
        assert!(second.poll(&w).is_pending());
        // Polled again (with a new waker, say), it keeps its one place in the queue.
        let (newer, w2) = waker();
        assert!(second.poll(&w2).is_pending());
        assert_eq!(queued(&gate), 1);
        gate.release();
        assert_eq!((count.get(), newer.get()), (0, 1), "only the latest waker");
        assert_eq!(second.poll(&w2), Poll::Ready(Ok(())));
        assert_eq!(queued(&gate), 0);
        assert_eq!(gate.acquire(false), Err(SubmitErrorKind::Full));
    }

    #[test]
    fn each_freed_place_wakes_the_first_in_the_queue() {
        let gate = Gate::new(1);
        gate.acquire(false).unwrap();
        let (a, wa) = waker();
        let (b, wb) = waker();
        let mut ta = Turn::new(&gate);
        let mut tb = Turn::new(&gate);
        assert!(ta.poll(&wa).is_pending());
        assert!(tb.poll(&wb).is_pending());
        gate.release();
        assert_eq!((a.get(), b.get()), (1, 0));
        assert_eq!(ta.poll(&wa), Poll::Ready(Ok(())));
        gate.release();
        assert_eq!((a.get(), b.get()), (1, 1));
        assert_eq!(tb.poll(&wb), Poll::Ready(Ok(())));
    }

    #[test]
    fn a_dropped_turn_leaves_the_queue_and_hands_its_wake_up_on() {
        let gate = Gate::new(1);
        gate.acquire(false).unwrap();
        let (a, wa) = waker();
        let (b, wb) = waker();
        let (c, wc) = waker();
        let mut ta = Turn::new(&gate);
        let mut tb = Turn::new(&gate);
        let mut tc = Turn::new(&gate);
        assert!(ta.poll(&wa).is_pending());
        assert!(tb.poll(&wb).is_pending());
        assert!(tc.poll(&wc).is_pending());
        // Dropped while queued: it leaves, and is never woken.
        drop(tb);
        assert_eq!(queued(&gate), 2);
        // Woken, then dropped without taking the place: the next one is woken instead.
        gate.release();
        assert_eq!((a.get(), b.get(), c.get()), (1, 0, 0));
        drop(ta);
        assert_eq!((a.get(), b.get(), c.get()), (1, 0, 1));
        assert_eq!(tc.poll(&wc), Poll::Ready(Ok(())));
        // No place was lost on the way.
        assert_eq!(gate.acquire(false), Err(SubmitErrorKind::Full));
        gate.release();
        assert_eq!(gate.acquire(false), Ok(()));
    }

    #[test]
    fn closing_wakes_every_turn_with_the_reason() {
        let gate = Gate::new(1);
        gate.acquire(false).unwrap();
        let (a, wa) = waker();
        let mut ta = Turn::new(&gate);
        let mut tb = Turn::new(&gate);
        assert!(ta.poll(&wa).is_pending());
        assert!(tb.poll(&wa).is_pending());
        gate.set_broken();
        assert_eq!(a.get(), 2);
        assert_eq!(ta.poll(&wa), Poll::Ready(Err(SubmitErrorKind::Broken)));
        gate.close();
        assert_eq!(tb.poll(&wa), Poll::Ready(Err(SubmitErrorKind::Closed)));
        assert_eq!(queued(&gate), 0);
    }
}
