//! What becomes of a task's delivery once it has an outcome, or before it runs: pure
//! decisions, tested without a server.

use procpool::{TaskError, TaskErrorKind};

/// What the agent writes for a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The outcome is the task's: written, and the delivery acknowledged.
    Final(Result<Vec<u8>, TaskError>),
    /// The run broke down in a way another try may not (the worker died under it, the
    /// agent could not start workers or is closing): released at once for any agent,
    /// with the error kept as the reason.
    Release(TaskError),
    /// Delivered too often: given up, written as `Poisoned` and put on the dead letters.
    Poison(TaskError),
}

/// Whether a delivery that ended in `error` is worth another: its worker died or broke
/// the link (the task's input may well be fine on another machine), or the agent could
/// not run it. A task's own error, panic or timeout would end the same way again.
pub(crate) fn is_released(error: &TaskError) -> bool {
    matches!(
        error.kind(),
        TaskErrorKind::Signaled
            | TaskErrorKind::Exited
            | TaskErrorKind::MemoryLimit
            | TaskErrorKind::Protocol
            | TaskErrorKind::Link
            | TaskErrorKind::WorkerStart
            | TaskErrorKind::PoolClosed
            | TaskErrorKind::AgentLost
    )
}

/// Whether a delivery that ended in `error` says the agent's pool can run nothing
/// more: it could not start a worker (its slots gave up), or it is closed. The agent
/// stops serving then.
pub(crate) fn is_pool_lost(error: &TaskError) -> bool {
    matches!(
        error.kind(),
        TaskErrorKind::WorkerStart | TaskErrorKind::PoolClosed
    )
}

/// The verdict on delivery number `deliveries` (from 1) of a task that ended in
/// `outcome`, with at most `cap` deliveries.
pub(crate) fn on_outcome(
    outcome: Result<Vec<u8>, TaskError>,
    deliveries: u32,
    cap: u32,
) -> Verdict {
    match outcome {
        Err(error) if is_released(&error) => match deliveries < cap {
            true => Verdict::Release(error),
            false => Verdict::Poison(poisoned(deliveries, error)),
        },
        outcome => Verdict::Final(outcome),
    }
}

/// Before running delivery number `deliveries` of a task whose last delivery ended in
/// `last_error`: `Some(poisoned)` when the cap is passed, so it does not run again.
pub(crate) fn before_run(deliveries: u32, cap: u32, last_error: TaskError) -> Option<TaskError> {
    (deliveries > cap).then(|| poisoned(deliveries - 1, last_error))
}

/// Why delivery number `deliveries - 1` of a task ended, for the agent taking it up as
/// delivery `deliveries`: the breakdown its agent `owner` recorded (`recorded`: the
/// delivery it ended and the error) if recorded for that very delivery, else that the
/// agent was lost. `recorded` comes from the server: any number may be there.
pub(crate) fn last_error(
    recorded: Option<(u32, TaskError)>,
    deliveries: u32,
    owner: &str,
) -> TaskError {
    match recorded {
        Some((delivery, error)) if delivery.checked_add(1) == Some(deliveries) => error,
        _ => TaskError::AgentLost {
            agent: owner.to_owned(),
        },
    }
}

fn poisoned(attempts: u32, last_error: TaskError) -> TaskError {
    TaskError::Poisoned {
        attempts,
        last_error: Box::new(last_error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segfault() -> TaskError {
        TaskError::Signaled {
            signal: 11,
            name: "SIGSEGV".into(),
            core_dumped: false,
            stderr: Vec::new(),
        }
    }

    #[test]
    fn a_crash_is_released_until_the_cap_then_poisoned() {
        assert_eq!(
            on_outcome(Err(segfault()), 1, 3),
            Verdict::Release(segfault())
        );
        assert_eq!(
            on_outcome(Err(segfault()), 2, 3),
            Verdict::Release(segfault())
        );
        let Verdict::Poison(TaskError::Poisoned {
            attempts,
            last_error,
        }) = on_outcome(Err(segfault()), 3, 3)
        else {
            panic!("the third crash of three is poisoned");
        };
        assert_eq!((attempts, *last_error), (3, segfault()));
    }

    #[test]
    fn the_task_s_own_ending_is_final_however_often_delivered() {
        let panic = TaskError::Panicked {
            message: "no".into(),
            location: None,
        };
        let timeout = TaskError::TimedOut {
            after: std::time::Duration::from_secs(1),
            stderr: Vec::new(),
        };
        for error in [panic, timeout, TaskError::Failed { chain: vec![] }] {
            assert_eq!(
                on_outcome(Err(error.clone()), 1, 3),
                Verdict::Final(Err(error))
            );
        }
        assert_eq!(on_outcome(Ok(vec![1]), 5, 3), Verdict::Final(Ok(vec![1])));
    }

    #[test]
    fn only_a_pool_that_cannot_run_tasks_stops_the_agent() {
        let start = TaskError::WorkerStart {
            message: "no such directory".into(),
        };
        assert!(is_pool_lost(&start));
        assert!(is_pool_lost(&TaskError::PoolClosed));
        // Released, but the next worker may well run the next task.
        assert!(!is_pool_lost(&segfault()));
        assert!(!is_pool_lost(&TaskError::Cancelled));
    }

    #[test]
    fn a_cap_of_one_never_releases() {
        assert!(matches!(
            on_outcome(Err(segfault()), 1, 1),
            Verdict::Poison(_)
        ));
    }

    #[test]
    fn a_lapse_is_blamed_on_the_recorded_breakdown_only_of_the_delivery_before() {
        let lost = TaskError::AgentLost { agent: "a".into() };
        assert_eq!(last_error(Some((2, segfault())), 3, "a"), segfault());
        assert_eq!(last_error(Some((1, segfault())), 3, "a"), lost);
        assert_eq!(last_error(None, 3, "a"), lost);
        // Garbage on the server: no overflow, no panic.
        assert_eq!(last_error(Some((u32::MAX, segfault())), 0, "a"), lost);
        assert_eq!(
            last_error(Some((u32::MAX, segfault())), u32::MAX, "a"),
            lost
        );
    }

    #[test]
    fn a_task_past_its_cap_is_not_run_again() {
        let lost = TaskError::AgentLost { agent: "a".into() };
        assert_eq!(before_run(3, 3, lost.clone()), None);
        assert_eq!(
            before_run(4, 3, lost.clone()),
            Some(TaskError::Poisoned {
                attempts: 3,
                last_error: Box::new(lost)
            })
        );
    }
}
