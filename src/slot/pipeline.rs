//! How much a slot sends its worker ahead of the running task, as pure functions:
//! enough quick work to hide the round trip between tasks, no long task held back
//! from another slot, and never more than the worker may run before it is recycled.

use std::time::Duration;

use crate::wire::fds::MAX_FRAME_FDS;

/// How much work, in time, is sent ahead of the running task: enough to hide the round
/// trip between tasks, little enough that a long task does not hold back work another
/// slot could start.
pub(crate) const PIPELINE_AHEAD: Duration = Duration::from_micros(500);
/// Most jobs sent to one worker at once.
pub(crate) const MAX_PIPELINE: usize = 64;
/// How many times its jobs' usual time the running task may take before the jobs
/// queued behind it are taken back for other workers.
pub(crate) const TAKE_BACK_FACTOR: f64 = 8.0;
/// However quick its jobs lately, the running task keeps the jobs behind it this long.
pub(crate) const TAKE_BACK_AFTER: Duration = Duration::from_millis(20);

/// How many jobs to keep sent to a worker whose tasks have lately taken `per_task`
/// seconds each (`None` before the first answer): the running one, plus about
/// `PIPELINE_AHEAD` of work behind it. A batch of several tasks is quick work by
/// construction: with one in flight (`batched`), one more always rides behind it.
pub(crate) fn depth(per_task: Option<f64>, batched: bool) -> usize {
    let depth = match per_task {
        None => 1,
        Some(mean) => {
            let ahead = PIPELINE_AHEAD.as_secs_f64() / mean.max(1e-9);
            1 + (ahead as usize).min(MAX_PIPELINE - 1)
        }
    };
    if batched {
        depth.max(2)
    } else {
        depth
    }
}

/// Whether the jobs queued behind a task that has run for `running` are taken back for
/// other workers, its worker's jobs having taken `per_job` seconds each lately (`None`
/// before the first answer): once it has run well past that, at least
/// [`TAKE_BACK_AFTER`]. A hung task then holds only its own worker; a task merely a
/// little slow keeps its pipeline.
pub(crate) fn take_back_due(running: Duration, per_job: Option<f64>) -> bool {
    let usual = TAKE_BACK_FACTOR * per_job.unwrap_or(0.0);
    running.as_secs_f64() > usual.max(TAKE_BACK_AFTER.as_secs_f64())
}

/// Whether a job with `more` descriptors (its shared buffers) may join a pipeline that
/// holds `held`: a worker holds the descriptors of every job sent to it, so they add
/// up to at most a frame's worth ([`MAX_FRAME_FDS`]), but for a job into an empty
/// pipeline, which always goes.
pub(crate) fn fds_fit(held: usize, more: usize) -> bool {
    held == 0 || held + more <= MAX_FRAME_FDS
}

/// How many more tasks a worker may be sent: with `max_tasks` per worker, less those it
/// has run (`done`) and those sent to it and not yet answered (`sent`).
pub(crate) fn room(max_tasks: Option<u64>, done: u64, sent: usize) -> usize {
    match max_tasks {
        None => usize::MAX,
        Some(max) => usize::try_from(max.saturating_sub(done))
            .unwrap_or(usize::MAX)
            .saturating_sub(sent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_tasks_are_pipelined_and_long_ones_are_not() {
        assert_eq!(depth(None, false), 1);
        assert_eq!(depth(Some(1.0), false), 1);
        assert_eq!(depth(Some(0.000_1), false), 6);
        assert_eq!(depth(Some(0.0), false), MAX_PIPELINE);
        assert_eq!(depth(None, true), 2);
        assert_eq!(depth(Some(1.0), true), 2);
        assert_eq!(depth(Some(0.000_1), true), 6);
    }

    #[test]
    fn the_jobs_behind_a_task_far_slower_than_usual_are_taken_back() {
        let ms = Duration::from_millis;
        // Quick jobs (1 ms): not before 20 ms, then yes.
        assert!(!take_back_due(ms(5), Some(0.001)));
        assert!(!take_back_due(ms(20), Some(0.001)));
        assert!(take_back_due(ms(21), Some(0.001)));
        assert!(take_back_due(ms(21), None));
        // Jobs of 100 ms: only past 800 ms.
        assert!(!take_back_due(ms(700), Some(0.1)));
        assert!(take_back_due(ms(801), Some(0.1)));
    }

    #[test]
    fn room_counts_what_was_run_and_what_was_sent() {
        assert_eq!(room(None, 1_000, 50), usize::MAX);
        assert_eq!(room(Some(4), 1, 2), 1);
        assert_eq!(room(Some(4), 3, 2), 0);
        assert_eq!(room(Some(4), 9, 0), 0);
    }

    #[test]
    fn descriptors_in_a_pipeline_add_up_to_a_frame_s_worth() {
        assert!(fds_fit(0, MAX_FRAME_FDS));
        assert!(
            fds_fit(1, 1),
            "a map's batches, one shared array each, pipeline"
        );
        assert!(fds_fit(32, MAX_FRAME_FDS - 32));
        assert!(!fds_fit(32, MAX_FRAME_FDS - 31));
        assert!(fds_fit(MAX_FRAME_FDS, 0));
    }
}
