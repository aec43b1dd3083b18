//! [`Counts`]: what a map's progress bar says besides its position: the outcomes so
//! far by kind, and the workers the pool lost and replaced meanwhile.

use std::fmt;

use crate::pool::stats::{Outcomes, Stats};

/// The counts a map's bar shows as its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    /// The outcomes the map has yielded, by kind.
    pub(crate) outcomes: Outcomes,
    /// Workers the pool lost while they ran a task, since the bar began: each is
    /// replaced, unless the pool is closing.
    pub(crate) workers_replaced: u64,
    /// Tasks the pool ran again after their worker was lost, since the bar began.
    pub(crate) retried: u64,
}

impl Counts {
    /// The map's `outcomes`, with what the pool's stats `now` count since `start`.
    /// The stats are the pool's: another map or submit running meanwhile adds to them.
    pub(crate) fn new(outcomes: Outcomes, start: &Stats, now: &Stats) -> Counts {
        Counts {
            outcomes,
            workers_replaced: now
                .worker_exits
                .lost()
                .saturating_sub(start.worker_exits.lost()),
            retried: now.retries.saturating_sub(start.retries),
        }
    }
}

/// `ok 812 · panicked 3 · signaled 2 · timed out 1 · workers replaced 6`: `ok` always,
/// the rest when not 0.
impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ok {}", self.outcomes.ok())?;
        for (kind, n) in self.outcomes.nonzero_errors() {
            f.write_str(" · ")?;
            // `timed_out` reads `timed out` on a terminal.
            for (i, word) in kind.name().split('_').enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                f.write_str(word)?;
            }
            write!(f, " {n}")?;
        }
        if self.workers_replaced > 0 {
            write!(f, " · workers replaced {}", self.workers_replaced)?;
        }
        if self.retried > 0 {
            write!(f, " · retried {}", self.retried)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TaskErrorKind;
    use crate::pool::stats::Counters;
    use crate::slot::event::ExitKind;

    fn outcomes(ok: u64, errors: &[(TaskErrorKind, u64)]) -> Outcomes {
        let mut outcomes = Outcomes::default();
        for _ in 0..ok {
            outcomes.add(None);
        }
        for (kind, n) in errors {
            for _ in 0..*n {
                outcomes.add(Some(*kind));
            }
        }
        outcomes
    }

    #[test]
    fn a_clean_run_says_ok_alone() {
        let counts = Counts {
            outcomes: outcomes(3, &[]),
            ..Counts::default()
        };
        assert_eq!(counts.to_string(), "ok 3");
        assert_eq!(Counts::default().to_string(), "ok 0");
    }

    #[test]
    fn faults_show_by_kind_in_a_fixed_order_then_the_workers() {
        let counts = Counts {
            outcomes: outcomes(
                812,
                &[
                    (TaskErrorKind::TimedOut, 1),
                    (TaskErrorKind::Panicked, 3),
                    (TaskErrorKind::Signaled, 2),
                ],
            ),
            workers_replaced: 6,
            retried: 0,
        };
        assert_eq!(
            counts.to_string(),
            "ok 812 · panicked 3 · signaled 2 · timed out 1 · workers replaced 6"
        );
        let counts = Counts {
            outcomes: outcomes(0, &[(TaskErrorKind::MemoryLimit, 1)]),
            workers_replaced: 2,
            retried: 1,
        };
        assert_eq!(
            counts.to_string(),
            "ok 0 · memory limit 1 · workers replaced 2 · retried 1"
        );
    }

    #[test]
    fn workers_count_from_the_start_of_the_bar() {
        let counters = Counters::new(2);
        counters.worker_exited(0, ExitKind::Lost(TaskErrorKind::Panicked));
        counters.retried(0);
        let start = counters.snapshot();
        counters.worker_exited(1, ExitKind::Lost(TaskErrorKind::Signaled));
        counters.worker_exited(1, ExitKind::Lost(TaskErrorKind::TimedOut));
        // Recycled, not lost: no task broke it.
        counters.worker_exited(0, ExitKind::Retired);
        counters.retried(1);
        let now = counters.snapshot();
        let counts = Counts::new(outcomes(1, &[]), &start, &now);
        assert_eq!((counts.workers_replaced, counts.retried), (2, 1));
        // Stats read while tasks move never make a count negative.
        let counts = Counts::new(Outcomes::default(), &now, &start);
        assert_eq!((counts.workers_replaced, counts.retried), (0, 0));
    }
}
