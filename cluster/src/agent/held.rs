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
}

/// The deliveries held, by run and entry id.
#[derive(Debug, Default)]
pub(crate) struct Held {
    map: Mutex<HashMap<(String, String), Delivery>>,
    freed: Condvar,
    /// How fast deliveries are written back.
    rate: Mutex<Rate>,
}

/// Write-backs per second, measured over windows of at least `WINDOW`, smoothed.
#[derive(Debug, Default)]
struct Rate {
    /// Since when the current window counts.
    since: Option<Instant>,
    count: u32,
    per_second: Option<f64>,
}

/// The shortest window a rate is measured over.
const WINDOW: Duration = Duration::from_millis(50);

impl Rate {
    fn count_one(&mut self, now: Instant) {
        let Some(since) = self.since else {
            // The first write-back opens the first window.
            self.since = Some(now);
            return;
        };
        self.count += 1;
        let window = now.duration_since(since);
        if window >= WINDOW {
            let rate = f64::from(self.count) / window.as_secs_f64();
            self.per_second = Some(self.per_second.map_or(rate, |r| r * 0.5 + rate * 0.5));
            self.since = Some(now);
            self.count = 0;
        }
    }
}

impl Held {
    pub(crate) fn insert(&self, delivery: Delivery) {
        let key = (delivery.keys.run.clone(), delivery.entry.clone());
        self.lock().insert(key, delivery);
    }

    /// Drops a delivery once it is written back, and wakes the loop waiting for room.
    pub(crate) fn remove(&self, run: &str, entry: &str) {
        if self
            .lock()
            .remove(&(run.to_owned(), entry.to_owned()))
            .is_some()
        {
            let mut rate = self.rate.lock().unwrap_or_else(|e| e.into_inner());
            rate.count_one(Instant::now());
        }
        self.freed.notify_all();
    }

    /// How many deliveries a second were lately written back, once known.
    pub(crate) fn rate(&self) -> Option<f64> {
        self.rate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .per_second
    }

    /// Whether the delivery of `entry` of `run` is held.
    pub(crate) fn contains(&self, run: &str, entry: &str) -> bool {
        self.lock()
            .contains_key(&(run.to_owned(), entry.to_owned()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(keys: &Arc<Keys>, entry: &str) -> Delivery {
        Delivery {
            keys: keys.clone(),
            entry: entry.to_owned(),
            seq: 0,
            deliveries: 1,
        }
    }

    #[test]
    fn a_delivery_is_held_from_its_start_until_written_back() {
        let held = Held::default();
        let keys = Arc::new(Keys::of("r"));
        held.insert(delivery(&keys, "1-0"));
        held.insert(delivery(&Arc::new(Keys::of("s")), "1-0"));
        assert!(held.contains("r", "1-0"));
        assert!(!held.contains("r", "2-0"));
        assert_eq!(held.len(), 2);
        held.remove("r", "1-0");
        assert!(!held.contains("r", "1-0"));
        assert!(held.contains("s", "1-0"));
        assert_eq!(held.by_run()["s"].1, vec!["1-0".to_owned()]);
    }
}
