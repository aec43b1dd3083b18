//! Traces for the `tracing` crate, with the `tracing` feature: a span per map, a span
//! per job a worker takes up (a submitted task, or a batch of a map's tasks) with the
//! task's name and the worker's pid, tasks that break down as warnings, and workers
//! that leave. Without the feature the same calls do nothing and the types hold
//! nothing; the choice is made here once. The library never installs a subscriber.

#[cfg(not(feature = "tracing"))]
pub(crate) use off::*;
#[cfg(feature = "tracing")]
pub(crate) use on::*;

#[cfg(feature = "tracing")]
mod on {
    use tracing::{debug, info, info_span, warn, Span};

    use crate::error::{TaskError, TaskErrorKind};
    use crate::slot::event::{ExitCause, TaskId, TaskRange};

    /// Whether `kind` is worth a warning: the task broke down, or could not be run at
    /// all; not its own `Err`, a cancel or a closed pool, which callers ask for.
    pub(super) fn is_warning(kind: TaskErrorKind) -> bool {
        !matches!(
            kind,
            TaskErrorKind::Failed | TaskErrorKind::Cancelled | TaskErrorKind::PoolClosed
        )
    }

    /// The span a job's spans hang under: its map's, or the one that was current where
    /// the task was submitted.
    #[derive(Debug, Clone)]
    pub(crate) struct Parent(Span);

    impl Default for Parent {
        fn default() -> Parent {
            Parent(Span::none())
        }
    }

    impl Parent {
        /// The span current in this thread.
        pub(crate) fn here() -> Parent {
            Parent(Span::current())
        }

        /// A new span for the map numbered `map` of tasks named `task`, under the
        /// current one; it closes when the map is dropped.
        pub(crate) fn map(task: &'static str, map: u64) -> Parent {
            Parent(info_span!("procpool.map", task, map))
        }
    }

    /// A job's trace: its parent, and its span while a worker has it.
    #[derive(Debug, Default)]
    pub(crate) struct JobTrace {
        parent: Parent,
        running: Option<Span>,
    }

    impl JobTrace {
        pub(crate) fn under(parent: Parent) -> JobTrace {
            JobTrace {
                parent,
                running: None,
            }
        }

        /// The trace of a piece cut from this job.
        pub(crate) fn piece(&self) -> JobTrace {
            JobTrace::under(self.parent.clone())
        }

        /// Worker `pid` of slot `slot` took the job up: its span opens (and the span
        /// of an earlier run closes).
        pub(crate) fn started(&mut self, tasks: TaskRange, slot: usize, pid: u32) {
            let parent = &self.parent.0;
            let span = match tasks.first {
                TaskId::Submitted(_) => info_span!(
                    parent: parent,
                    "procpool.task",
                    task = tasks.name,
                    id = %tasks.first,
                    slot,
                    pid,
                ),
                TaskId::Mapped { .. } => info_span!(
                    parent: parent,
                    "procpool.batch",
                    task = tasks.name,
                    first = %tasks.first,
                    tasks = tasks.count,
                    slot,
                    pid,
                ),
            };
            self.running = Some(span);
        }

        fn span(&self) -> &Span {
            self.running.as_ref().unwrap_or(&self.parent.0)
        }
    }

    /// Task `id` ended in `error`: a warning if it broke down, else a debug event. In
    /// its job's span, or where the caller is for outcomes decided in its thread
    /// (`job`: `None`).
    pub(crate) fn finished(
        job: Option<&JobTrace>,
        task: &'static str,
        id: TaskId,
        slot: Option<usize>,
        pid: Option<u32>,
        error: &TaskError,
    ) {
        let kind = error.kind();
        match (job.map(JobTrace::span), is_warning(kind)) {
            (Some(span), true) => {
                warn!(parent: span, task, id = %id, slot, pid, kind = %kind, "{error}")
            }
            (Some(span), false) => {
                debug!(parent: span, task, id = %id, slot, pid, kind = %kind, "{error}")
            }
            (None, true) => warn!(task, id = %id, kind = %kind, "{error}"),
            (None, false) => debug!(task, id = %id, kind = %kind, "{error}"),
        }
    }

    /// Task `id`'s worker was lost (`error`); the task runs again.
    pub(crate) fn retried(
        job: &JobTrace,
        task: &'static str,
        id: TaskId,
        slot: usize,
        pid: u32,
        attempt: u32,
        error: &TaskError,
    ) {
        let kind = error.kind();
        warn!(
            parent: job.span(),
            task,
            id = %id,
            slot,
            pid,
            attempt,
            kind = %kind,
            "{error}; the task runs again"
        );
    }

    pub(crate) fn worker_started(slot: usize, pid: u32) {
        debug!(slot, pid, "worker started");
    }

    /// A worker left: lost or dead, it is replaced (info); a failed start is a
    /// warning; recycling and closing are routine (debug).
    pub(crate) fn worker_exited(slot: usize, pid: u32, cause: &ExitCause) {
        match cause {
            ExitCause::Lost(TaskError::PoolClosed) | ExitCause::PoolClosed => {
                debug!(slot, pid, cause = %cause, "worker stopped as the pool closed");
            }
            ExitCause::Retired => debug!(slot, pid, "worker retired; a fresh one replaces it"),
            ExitCause::FailedStart(_) => warn!(slot, pid, cause = %cause, "worker failed to start"),
            ExitCause::Lost(_) | ExitCause::DiedIdle => {
                info!(slot, pid, cause = %cause, "worker lost; a fresh one replaces it");
            }
        }
    }
}

#[cfg(not(feature = "tracing"))]
mod off {
    use crate::error::TaskError;
    use crate::slot::event::{ExitCause, TaskId, TaskRange};

    /// Nothing, without the `tracing` feature (neither `Copy` nor a unit struct, so
    /// that code written against it reads the same as against the real one).
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Parent {}

    impl Parent {
        #[inline]
        pub(crate) fn here() -> Parent {
            Parent {}
        }

        #[inline]
        pub(crate) fn map(_task: &'static str, _map: u64) -> Parent {
            Parent {}
        }
    }

    /// Nothing, without the `tracing` feature.
    #[derive(Debug, Default)]
    pub(crate) struct JobTrace {}

    impl JobTrace {
        #[inline]
        pub(crate) fn under(_parent: Parent) -> JobTrace {
            JobTrace {}
        }

        #[inline]
        pub(crate) fn piece(&self) -> JobTrace {
            JobTrace {}
        }

        #[inline]
        pub(crate) fn started(&mut self, _tasks: TaskRange, _slot: usize, _pid: u32) {}
    }

    #[inline]
    pub(crate) fn finished(
        _job: Option<&JobTrace>,
        _task: &'static str,
        _id: TaskId,
        _slot: Option<usize>,
        _pid: Option<u32>,
        _error: &TaskError,
    ) {
    }

    #[inline]
    pub(crate) fn retried(
        _job: &JobTrace,
        _task: &'static str,
        _id: TaskId,
        _slot: usize,
        _pid: u32,
        _attempt: u32,
        _error: &TaskError,
    ) {
    }

    #[inline]
    pub(crate) fn worker_started(_slot: usize, _pid: u32) {}

    #[inline]
    pub(crate) fn worker_exited(_slot: usize, _pid: u32, _cause: &ExitCause) {}
}

#[cfg(all(test, feature = "tracing"))]
mod tests {
    use super::on::is_warning;
    use crate::error::TaskErrorKind;

    #[test]
    fn warnings_are_for_breakdowns_not_for_what_callers_asked() {
        assert!(is_warning(TaskErrorKind::Panicked));
        assert!(is_warning(TaskErrorKind::TimedOut));
        assert!(is_warning(TaskErrorKind::UnknownTask));
        assert!(!is_warning(TaskErrorKind::Failed));
        assert!(!is_warning(TaskErrorKind::Cancelled));
        assert!(!is_warning(TaskErrorKind::PoolClosed));
    }
}
