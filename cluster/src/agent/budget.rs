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
/// queued or being written back) and tasks lately finishing at `rate` per second
/// (`None` before it is known, when nothing is fetched ahead): `AHEAD` of work at
/// that rate, which is `AHEAD` over the task's time per worker.
pub(crate) fn free(workers: usize, held: usize, rate: Option<f64>) -> usize {
    let ahead = match rate {
        None => 0,
        Some(rate) => {
            let ahead = (rate.max(0.0) * AHEAD.as_secs_f64()) as usize;
            ahead.min(workers.saturating_mul(MAX_AHEAD_PER_WORKER))
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
        // Three-hour tasks on two workers, or 50 ms ones: under one task in 2 ms.
        assert_eq!(free(2, 2, Some(2.0 / (3.0 * 3600.0))), 0);
        assert_eq!(free(2, 0, Some(40.0)), 2);
    }

    #[test]
    fn quick_tasks_keep_a_short_pipeline() {
        // 100 µs tasks on two workers finish 20,000 a second: 2 ms of them is 40.
        assert_eq!(free(2, 0, Some(20_000.0)), 2 + 40);
        assert_eq!(free(2, 30, Some(20_000.0)), 12);
        // However quick, at most 64 per worker.
        assert_eq!(free(2, 0, Some(1e12)), 2 + 128);
    }
}
