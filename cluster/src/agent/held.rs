//! The deliveries an agent holds: fetched from the server and not yet written back.
//! Shared by the fetching loop (which adds, and renews their leases) and the writer
//! (which removes each once its outcome is written).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::keys::Keys;

/// One delivery held: the run's keys, the stream entry, the task's number and which
/// delivery of it this is.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) keys: Arc<Keys>,
    pub(crate) entry: String,
    pub(crate) seq: u64,
    pub(crate) deliveries: u32,
    /// When it was fetched.
    pub(crate) fetched: Instant,
}

/// The deliveries held, by run and entry id.
#[derive(Debug, Default)]
pub(crate) struct Held {
    map: Mutex<HashMap<(String, String), Delivery>>,
    freed: Condvar,
    /// A moving mean of the time from fetch to write-back, in seconds.
    mean: Mutex<Option<f64>>,
}

impl Held {
    pub(crate) fn insert(&self, delivery: Delivery) {
        let key = (delivery.keys.run.clone(), delivery.entry.clone());
        self.lock().insert(key, delivery);
    }

    /// Drops a delivery once it is written back, and wakes the loop waiting for room.
    pub(crate) fn remove(&self, run: &str, entry: &str) {
        let removed = self.lock().remove(&(run.to_owned(), entry.to_owned()));
        if let Some(delivery) = removed {
            let took = delivery.fetched.elapsed().as_secs_f64();
            let mut mean = self.mean.lock().unwrap_or_else(|e| e.into_inner());
            *mean = Some(mean.map_or(took, |mean| mean * 0.9 + took * 0.1));
        }
        self.freed.notify_all();
    }

    /// How long deliveries lately took from fetch to write-back.
    pub(crate) fn mean(&self) -> Option<Duration> {
        let mean = *self.mean.lock().unwrap_or_else(|e| e.into_inner());
        mean.map(Duration::from_secs_f64)
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The entry ids held in each run.
    pub(crate) fn by_run(&self) -> HashMap<String, (Arc<Keys>, Vec<String>)> {
        let mut runs: HashMap<String, (Arc<Keys>, Vec<String>)> = HashMap::new();
        for delivery in self.lock().values() {
            runs.entry(delivery.keys.run.clone())
                .or_insert_with(|| (delivery.keys.clone(), Vec::new()))
                .1
                .push(delivery.entry.clone());
        }
        runs
    }

    /// Waits up to `timeout` for fewer than `count` deliveries to be held.
    pub(crate) fn wait_below(&self, count: usize, timeout: Duration) {
        let held = self.lock();
        let _ = self
            .freed
            .wait_timeout_while(held, timeout, |held| held.len() >= count);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Delivery>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}
