//! The names of a run's keys on the server, all under one hash tag (`{run}`) so that
//! they share a slot, and the keys every run shares.

/// Every run this server holds that agents should serve: a set of run ids.
pub(crate) const RUNS: &str = "pp:runs";
/// Rung (a stream entry) whenever there is work to look at: tasks added, a task
/// released after a crash. Idle agents block on it rather than poll every run.
pub(crate) const BELL: &str = "pp:bell";
/// How many rings the bell keeps (older ones are trimmed; only the newest matters).
pub(crate) const BELL_LENGTH: usize = 64;
/// The consumer group of a run's task stream: every agent reads through it.
pub(crate) const GROUP: &str = "agents";

/// The keys of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    /// The run's id, as the user named it.
    pub(crate) run: String,
    /// The tasks, one entry each (see `entry::TaskEntry`).
    pub(crate) tasks: String,
    /// The outcomes agents wrote, one entry per run of a task (duplicates possible).
    pub(crate) outcomes: String,
    /// Tasks given up (poisoned) or entries that are not tasks, with the reason.
    pub(crate) dead: String,
    /// The run's settings and counts: a hash.
    pub(crate) meta: String,
    /// The last breakdown of each task that had one, by task number: a hash.
    pub(crate) errors: String,
}

impl Keys {
    /// The keys of the run `run`.
    pub(crate) fn of(run: &str) -> Keys {
        let key = |what: &str| format!("pp:{{{run}}}:{what}");
        Keys {
            run: run.to_owned(),
            tasks: key("tasks"),
            outcomes: key("outcomes"),
            dead: key("dead"),
            meta: key("meta"),
            errors: key("errors"),
        }
    }

    /// Every key of the run, to expire or delete them together.
    pub(crate) fn all(&self) -> [&str; 5] {
        [
            &self.tasks,
            &self.outcomes,
            &self.dead,
            &self.meta,
            &self.errors,
        ]
    }
}

/// Whether `run` may name a run: 1 to 128 characters of letters, digits, `-`, `_`,
/// `.` or `:`. Braces would break the hash tag; spaces and control characters the logs.
pub(crate) fn is_valid_run_id(run: &str) -> bool {
    (1..=128).contains(&run.len())
        && run
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The command that rings the bell for run `run`.
pub(crate) fn ring(run: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(BELL)
        .arg("MAXLEN")
        .arg("~")
        .arg(BELL_LENGTH)
        .arg("*")
        .arg("run")
        .arg(run);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_s_keys_share_one_hash_tag() {
        let keys = Keys::of("batch-7");
        assert_eq!(keys.tasks, "pp:{batch-7}:tasks");
        assert!(keys.all().iter().all(|k| k.starts_with("pp:{batch-7}:")));
    }

    #[test]
    fn run_ids_that_would_break_a_key_are_refused() {
        assert!(is_valid_run_id("nightly-2026-12-04.v2:eu"));
        for bad in ["", "a}b", "{x}", "has space", "new\nline", &"x".repeat(129)] {
            assert!(!is_valid_run_id(bad), "{bad:?}");
        }
    }
}
