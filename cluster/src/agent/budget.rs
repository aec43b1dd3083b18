//! How many tasks an agent asks the server for: its idle workers plus the short
//! pipeline the local pool keeps for quick tasks, never more, so that no busy agent
//! holds tasks an idle one could run. A pure function.

use std::time::Duration;

/// How much work, in time, an agent keeps fetched ahead of its workers: enough to hide
/// a round trip to the server between quick tasks.
pub(crate) const AHEAD: Duration = Duration::from_millis(2);
/// Most tasks fetched ahead per worker, however quick.
pub(crate) const MAX_AHEAD_PER_WORKER: usize = 64;

/// How many more tasks to fetch with `workers` workers, `held` tasks held (running,
/// queued or being written back) and tasks lately taking `mean` each (`None` before
/// the first outcome, when nothing is fetched ahead).
pub(crate) fn free(workers: usize, held: usize, mean: Option<Duration>) -> usize {
    let ahead = match mean {
        None => 0,
        Some(mean) => {
            let per_worker = AHEAD.as_secs_f64() / mean.as_secs_f64().max(1e-9);
            workers.saturating_mul((per_worker as usize).min(MAX_AHEAD_PER_WORKER))
        }
    };
    (workers + ahead).saturating_sub(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_any_outcome_only_idle_workers_fetch() {
        assert_eq!(free(4, 0, None), 4);
        assert_eq!(free(4, 3, None), 1);
        assert_eq!(free(4, 4, None), 0);
        assert_eq!(free(4, 9, None), 0);
    }

    #[test]
    fn slow_tasks_are_never_fetched_ahead() {
        assert_eq!(free(2, 2, Some(Duration::from_secs(3 * 3600))), 0);
        assert_eq!(free(2, 0, Some(Duration::from_millis(50))), 2);
    }

    #[test]
    fn quick_tasks_keep_a_short_pipeline() {
        // 100 µs tasks: 2 ms ahead is 20 per worker.
        assert_eq!(free(2, 0, Some(Duration::from_micros(100))), 2 + 40);
        // However quick, at most 64 per worker.
        assert_eq!(free(2, 0, Some(Duration::from_nanos(1))), 2 + 128);
    }
}
