//! How a map's outcomes reach it: [`Outbox`], the sending end each of its batches holds
//! (the slots deliver through it), and [`Mailbox`], the map's end.
//!
//! A map iterated as an `Iterator` blocks its thread on the channel. A map polled as a
//! stream cannot block: it leaves a waker in the mailbox, and every delivery wakes it.
//! What travels is a [`Delivery`]: the outcomes of consecutive tasks of one batch.

#[cfg(feature = "async")]
use std::sync::Arc;
#[cfg(feature = "async")]
use std::task::{Poll, Waker};

use crossbeam_channel::{Receiver, Sender};

#[cfg(feature = "async")]
use super::wakeup::Wakeup;
use crate::error::TaskError;

/// Outcomes of consecutive tasks of a map, from one batch.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// The map index of the first of them.
    pub(crate) index: usize,
    pub(crate) segment: Segment,
    /// Set on a batch's final delivery from a worker: the worker's time running it and
    /// the number of tasks it ran, which the map sizes its next batches by.
    pub(crate) timing: Option<(u64, usize)>,
}

#[derive(Debug)]
pub(crate) enum Segment {
    /// The records (`wire::batch`) of `count` tasks, as their worker wrote them.
    Records { count: usize, records: Vec<u8> },
    /// `count` tasks that all ended with `error`.
    Failed { count: usize, error: TaskError },
}

impl Segment {
    pub(crate) fn len(&self) -> usize {
        match self {
            Segment::Records { count, .. } | Segment::Failed { count, .. } => *count,
        }
    }
}

/// A new channel for one map's deliveries.
pub(crate) fn channel() -> (Outbox, Mailbox) {
    let (tx, rx) = crossbeam_channel::unbounded();
    #[cfg(feature = "async")]
    let wakeup = Arc::new(Wakeup::default());
    (
        Outbox {
            tx,
            #[cfg(feature = "async")]
            wakeup: wakeup.clone(),
        },
        Mailbox {
            rx,
            #[cfg(feature = "async")]
            wakeup,
        },
    )
}

/// Where a batch delivers its outcomes.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    tx: Sender<Delivery>,
    /// Where a map polled as a stream leaves its waker.
    #[cfg(feature = "async")]
    wakeup: Arc<Wakeup>,
}

impl Outbox {
    /// Hands `delivery` to the map, and wakes it if it waits as a stream. A map that
    /// was dropped no longer listens: the delivery has nowhere to go and is dropped.
    pub(crate) fn send(&self, delivery: Delivery) {
        // Sent before the waker is taken: a stream that leaves its waker after this
        // take looks at the channel after, and finds the delivery.
        let _ = self.tx.send(delivery);
        #[cfg(feature = "async")]
        self.wakeup.wake();
    }
}

/// The map's end of its deliveries.
#[derive(Debug)]
pub(crate) struct Mailbox {
    rx: Receiver<Delivery>,
    #[cfg(feature = "async")]
    wakeup: Arc<Wakeup>,
}

impl Mailbox {
    /// Blocks for the next delivery.
    pub(crate) fn recv(&self) -> Delivery {
        self.rx
            .recv()
            .expect("the map holds an outbox, so the channel stays open")
    }

    /// The next delivery if there is one; if not, `waker` is woken when one comes.
    #[cfg(feature = "async")]
    pub(crate) fn poll_recv(&self, waker: &Waker) -> Poll<Delivery> {
        if let Ok(delivery) = self.rx.try_recv() {
            return Poll::Ready(delivery);
        }
        self.wakeup.set(waker);
        // A delivery sent between the look and the waker being left would wake no one:
        // look again now that the waker is there.
        match self.rx.try_recv() {
            Ok(delivery) => Poll::Ready(delivery),
            Err(_) => Poll::Pending,
        }
    }
}

#[cfg(all(test, feature = "async"))]
mod tests {
    use super::Segment;
    use super::*;
    use crate::error::TaskError;
    use crate::pool::wakeup::counting;

    fn delivery(index: usize) -> Delivery {
        Delivery {
            index,
            segment: Segment::Failed {
                count: 1,
                error: TaskError::Cancelled,
            },
            timing: None,
        }
    }

    #[test]
    fn a_delivery_wakes_the_stream_waiting_for_it_once() {
        let (count, waker) = counting::waker();
        let (outbox, mailbox) = channel();
        assert!(mailbox.poll_recv(&waker).is_pending());
        outbox.clone().send(delivery(3));
        assert_eq!(count.get(), 1);
        // Nobody waits now: a second delivery wakes nothing, and both are there.
        outbox.send(delivery(4));
        assert_eq!(count.get(), 1);
        assert!(matches!(mailbox.poll_recv(&waker), Poll::Ready(d) if d.index == 3));
        assert_eq!(mailbox.recv().index, 4);
    }
}
