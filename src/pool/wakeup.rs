//! [`Wakeup`]: the waker of whoever waits without a thread, the latest one only.

use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

/// Where the party that records something (an outcome, a delivery) finds the waker of
/// a future or stream that waits for it. A poll replaces the waker of the poll before,
/// as the `Future` contract asks: only the latest is woken.
#[derive(Debug, Default)]
pub(crate) struct Wakeup(Mutex<Option<Waker>>);

impl Wakeup {
    /// Keeps `waker`, in place of the one kept before unless both wake the same task.
    pub(crate) fn set(&self, waker: &Waker) {
        let mut slot = self.lock();
        if !slot.as_ref().is_some_and(|kept| kept.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    /// Wakes the waker kept, if any, once: it is dropped after.
    pub(crate) fn wake(&self) {
        let waker = self.lock().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Waker>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A waker that counts its wake-ups, for the tests of whatever wakes.
#[cfg(test)]
pub(crate) mod counting {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    #[derive(Debug, Default)]
    pub(crate) struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Count {
        /// Wake-ups so far.
        pub(crate) fn get(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// A new waker, and the count of its wake-ups.
    pub(crate) fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (count.clone(), Waker::from(count))
    }
}
