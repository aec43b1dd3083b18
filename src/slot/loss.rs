//! Blame after a loss, as pure functions over plain facts: whether a lost worker had
//! failed its start, and what becomes of the task it was running. The design note
//! `README.md` beside this file tells the whole story; the supervisor gathers the
//! facts and acts on the verdict.

/// Whether losing a worker is a failed start (no task ran; every job goes back, no
/// attempt counted): it had not said `Ready` when it was lost (`ready_before`) and
/// still had not among its last frames (`ready_after`), or it was killed for its start
/// (a deadline, a bad frame: not a `crash`) although a `Ready` turned up among them.
pub(crate) fn is_failed_start(ready_before: bool, ready_after: bool, crash: bool) -> bool {
    !ready_after || (!ready_before && !crash)
}

/// What becomes of the task a lost worker was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The pool is closing: `PoolClosed`.
    Closed,
    /// Not to blame (it never began, or its worker was killed for the task before it,
    /// whose answer came): it runs again, no attempt counted.
    Requeue,
    /// To blame, with a retry to spare: it runs again on a fresh worker, one more
    /// attempt counted.
    Retry,
    /// To blame: it ends with the loss's error.
    Fail,
}

/// The facts the verdict rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loss {
    /// The worker died by itself (a signal, an exit), not killed by the slot.
    pub(crate) crash: bool,
    /// A rerun may help (a crash, a protocol or link failure; not a timeout, a
    /// cancel or a memory limit).
    pub(crate) retryable: bool,
    /// The task was the head when the worker was lost, not one it moved on to after
    /// the head's answer turned up in the last frames.
    pub(crate) was_head: bool,
    /// The worker may have begun it: its journal counted it taken up, or it was sent
    /// before the journal (so nothing tells).
    pub(crate) began: bool,
    /// Runs of the task lost so far, and reruns it may have.
    pub(crate) attempts: u32,
    pub(crate) retries: u32,
    pub(crate) terminating: bool,
}

/// The verdict on the task a lost worker was running.
pub(crate) fn verdict(loss: Loss) -> Verdict {
    if loss.terminating {
        Verdict::Closed
    } else if !loss.began || !(loss.crash || loss.was_head) {
        Verdict::Requeue
    } else if loss.retryable && loss.attempts < loss.retries {
        Verdict::Retry
    } else {
        Verdict::Fail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loss_before_ready_is_a_failed_start() {
        // (ready before, ready after, crash) -> failed start
        let cases = [
            ((false, false, true), true),
            ((false, false, false), true),
            // Its `Ready` was among its last frames: it crashed running the task.
            ((false, true, true), false),
            // Killed for its start (deadline, bad frame) though a `Ready` came late.
            ((false, true, false), true),
            ((true, true, true), false),
            ((true, true, false), false),
        ];
        for ((before, after, crash), failed) in cases {
            assert_eq!(
                is_failed_start(before, after, crash),
                failed,
                "{before} {after} {crash}"
            );
        }
    }

    fn loss() -> Loss {
        Loss {
            crash: true,
            retryable: true,
            was_head: true,
            began: true,
            attempts: 0,
            retries: 0,
            terminating: false,
        }
    }

    #[test]
    fn the_task_that_crashed_its_worker_fails_unless_a_retry_is_left() {
        assert_eq!(verdict(loss()), Verdict::Fail);
        let spare = Loss {
            retries: 2,
            attempts: 1,
            ..loss()
        };
        assert_eq!(verdict(spare), Verdict::Retry);
        let spent = Loss {
            retries: 2,
            attempts: 2,
            ..loss()
        };
        assert_eq!(verdict(spent), Verdict::Fail);
        // A timeout, a cancel or a memory limit is never retried.
        let timed_out = Loss {
            crash: false,
            retryable: false,
            retries: 5,
            ..loss()
        };
        assert_eq!(verdict(timed_out), Verdict::Fail);
    }

    #[test]
    fn a_task_its_worker_moved_on_to_is_not_blamed_for_a_kill() {
        let moved_on = Loss {
            crash: false,
            retryable: false,
            was_head: false,
            ..loss()
        };
        assert_eq!(verdict(moved_on), Verdict::Requeue);
        // A crash is the running task's, whichever it is.
        let crashed = Loss {
            was_head: false,
            ..loss()
        };
        assert_eq!(verdict(crashed), Verdict::Fail);
    }

    #[test]
    fn a_task_its_worker_never_began_is_not_blamed() {
        // Its worker died before taking it up (killed while idle, say): whatever the
        // loss, it runs again, no attempt counted.
        let never_began = Loss {
            began: false,
            ..loss()
        };
        assert_eq!(verdict(never_began), Verdict::Requeue);
        let timed_out_before_it = Loss {
            began: false,
            crash: false,
            retryable: false,
            ..loss()
        };
        assert_eq!(verdict(timed_out_before_it), Verdict::Requeue);
    }

    #[test]
    fn a_closing_pool_ends_the_task_in_pool_closed() {
        let closing = Loss {
            terminating: true,
            retries: 3,
            ..loss()
        };
        assert_eq!(verdict(closing), Verdict::Closed);
    }
}
