//! [`TaskOptions`]: settings for one submit or one map, over the task's own (see
//! [`Task::options`](crate::Task::options)), over the pool's.

use std::time::Duration;

use super::job::JobOptions;

/// Settings for the tasks of one [`submit_with`](crate::Pool::submit_with), one
/// [`map_with`](crate::Pool::map_with) or one [`call_with`](crate::Pool::call_with),
/// in place of the task's own and the pool's.
///
/// Each setting left unset is the task's own, if it has one
/// ([`Task::options`](crate::Task::options), or the `timeout` and `retries` of
/// `#[procpool::task]`), else the pool's (see
/// [`PoolBuilder`](crate::PoolBuilder)), so `TaskOptions::new()` changes nothing. A task
/// that needs longer than the rest, or must not be run twice, says so here without a
/// second pool:
///
/// ```no_run
/// # use std::time::Duration;
/// # fn demo<T: procpool::Task>(
/// #     pool: &procpool::Pool,
/// #     task: T,
/// # ) -> Result<T::Output, Box<dyn std::error::Error>> {
/// let patient = procpool::TaskOptions::new()
///     .timeout(Duration::from_secs(60))
///     .retries(0);
/// let output = pool.submit_with(task, &patient)?.wait()?;
/// # Ok(output) }
/// ```
///
/// The pool's methods take it by reference, so one value serves many calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskOptions {
    timeout: Choice<Option<Duration>>,
    retries: Choice<u32>,
}

/// One setting: left to the task's own and then the pool's, or the caller's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Choice<T> {
    #[default]
    Unset,
    Own(T),
}

impl<T> Choice<T> {
    fn or(self, pool: T) -> T {
        match self {
            Choice::Unset => pool,
            Choice::Own(own) => own,
        }
    }

    /// This choice if made, else `under`.
    fn over(self, under: Choice<T>) -> Choice<T> {
        match self {
            Choice::Unset => under,
            own => own,
        }
    }
}

impl TaskOptions {
    /// Options that change nothing: every setting is the pool's until set.
    #[must_use]
    pub fn new() -> TaskOptions {
        TaskOptions::default()
    }

    /// Longest each task may run, in place of the pool's
    /// [`timeout`](crate::PoolBuilder::timeout) (longer or shorter, or where the pool has
    /// none). A task past it ends in [`TaskError::TimedOut`](crate::TaskError::TimedOut)
    /// with `after` set to this limit, and its worker is replaced.
    ///
    /// # Panics
    /// If `timeout` is zero: no task could run in it (the pool's builder refuses zero
    /// too).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> TaskOptions {
        assert!(!timeout.is_zero(), "a task's timeout must be above zero");
        self.timeout = Choice::Own(Some(timeout));
        self
    }

    /// No time limit for these tasks, even if the pool has one: for the rare task known
    /// to take long among many that must not.
    #[must_use]
    pub fn no_timeout(mut self) -> TaskOptions {
        self.timeout = Choice::Own(None);
        self
    }

    /// How many times a task whose worker crashed is run again on a fresh worker, in
    /// place of the pool's [`retries`](crate::PoolBuilder::retries): 0 for a task that
    /// must not run twice, more for one that crashes now and then.
    #[must_use]
    pub fn retries(mut self, n: u32) -> TaskOptions {
        self.retries = Choice::Own(n);
        self
    }

    /// The timeout these options set, if they set one: `Some(Some(limit))`, or
    /// `Some(None)` for [`no_timeout`](TaskOptions::no_timeout); `None` leaves it to the
    /// task's own and the pool's. For a transport that carries the options along.
    pub fn timeout_setting(&self) -> Option<Option<Duration>> {
        match self.timeout {
            Choice::Unset => None,
            Choice::Own(own) => Some(own),
        }
    }

    /// These options over `under`, a task's own (see
    /// [`Task::options`](crate::Task::options)): each setting these leave unset is
    /// `under`'s.
    pub(crate) fn over(&self, under: &TaskOptions) -> TaskOptions {
        TaskOptions {
            timeout: self.timeout.over(under.timeout),
            retries: self.retries.over(under.retries),
        }
    }

    /// What a job runs with: these options where set, the pool's `defaults` elsewhere.
    pub(crate) fn resolve(&self, defaults: JobOptions) -> JobOptions {
        JobOptions {
            timeout: self.timeout.or(defaults.timeout),
            retries: self.retries.or(defaults.retries),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: JobOptions = JobOptions {
        timeout: Some(Duration::from_secs(5)),
        retries: 2,
    };
    const NO_LIMIT: JobOptions = JobOptions {
        timeout: None,
        retries: 0,
    };

    #[test]
    fn unset_options_are_the_pools() {
        assert_eq!(TaskOptions::new().resolve(POOL), POOL);
        assert_eq!(TaskOptions::new().resolve(NO_LIMIT), NO_LIMIT);
    }

    #[test]
    fn each_setting_overrides_only_itself() {
        let short = TaskOptions::new().timeout(Duration::from_millis(50));
        assert_eq!(
            short.resolve(POOL),
            JobOptions {
                timeout: Some(Duration::from_millis(50)),
                retries: 2,
            }
        );
        // A limit where the pool has none, and one longer than the pool's.
        assert_eq!(
            short.resolve(NO_LIMIT).timeout,
            Some(Duration::from_millis(50))
        );
        let long = TaskOptions::new().timeout(Duration::from_secs(60));
        assert_eq!(long.resolve(POOL).timeout, Some(Duration::from_secs(60)));
        let once = TaskOptions::new().retries(0);
        assert_eq!(
            once.resolve(POOL),
            JobOptions {
                timeout: Some(Duration::from_secs(5)),
                retries: 0,
            }
        );
        assert_eq!(TaskOptions::new().retries(3).resolve(NO_LIMIT).retries, 3);
    }

    #[test]
    fn no_timeout_lifts_the_pools_limit() {
        let free = TaskOptions::new().no_timeout();
        assert_eq!(free.resolve(POOL).timeout, None);
        assert_eq!(free.resolve(POOL).retries, 2);
        assert_eq!(free.resolve(NO_LIMIT), NO_LIMIT);
    }

    #[test]
    fn the_last_word_on_the_timeout_counts() {
        let d = Duration::from_millis(10);
        assert_eq!(
            TaskOptions::new()
                .timeout(d)
                .no_timeout()
                .resolve(POOL)
                .timeout,
            None
        );
        assert_eq!(
            TaskOptions::new()
                .no_timeout()
                .timeout(d)
                .resolve(POOL)
                .timeout,
            Some(d)
        );
    }

    /// The pool's settings, under the task's own, under the call's.
    #[test]
    fn a_call_s_options_go_over_the_task_s_which_go_over_the_pool_s() {
        let task = TaskOptions::new()
            .timeout(Duration::from_millis(300))
            .retries(1);
        let call = TaskOptions::new().retries(4);
        assert_eq!(
            call.over(&task).resolve(POOL),
            JobOptions {
                timeout: Some(Duration::from_millis(300)),
                retries: 4,
            }
        );
        assert_eq!(
            TaskOptions::new().over(&task).resolve(POOL),
            task.resolve(POOL)
        );
        assert_eq!(
            TaskOptions::new().over(&TaskOptions::new()).resolve(POOL),
            POOL
        );
        // A call may lift the task's limit, and a task the pool's.
        let free = TaskOptions::new().no_timeout();
        assert_eq!(free.over(&task).resolve(POOL).timeout, None);
        assert_eq!(TaskOptions::new().over(&free).resolve(POOL).timeout, None);
        assert_eq!(
            task.over(&free).resolve(POOL).timeout,
            task.resolve(POOL).timeout
        );
    }

    #[test]
    #[should_panic(expected = "above zero")]
    fn a_zero_timeout_is_refused() {
        let _ = TaskOptions::new().timeout(Duration::ZERO);
    }
}
