//! What a submitter collects: [`Outcome`], a task's outcome with where and how often it
//! ran, and [`DeadLetter`], a task given up or an entry that was no task.

use redis::streams::StreamId;

use crate::entry;
use procpool::TaskError;

/// The outcome of one task of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<O> {
    /// The task's number in its run (what [`Run::submit`](crate::Run::submit) returned).
    pub seq: u64,
    /// Its output, or why there is none: the same [`TaskError`]s as on a local pool,
    /// and [`TaskError::Poisoned`] for a task given up after too many deliveries.
    pub result: Result<O, TaskError>,
    /// The node whose agent wrote the outcome.
    pub node: String,
    /// That agent's name.
    pub agent: String,
    /// Which delivery of the task this outcome ended (from 1).
    pub attempts: u32,
}

/// An entry of a run's dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The task stream's entry it was.
    pub entry: String,
    /// The task's number, if the entry gave one.
    pub seq: Option<u64>,
    /// Why it was set aside.
    pub reason: String,
    /// The agent that set it aside.
    pub agent: String,
    /// The error its task ended in, if any.
    pub error: Option<TaskError>,
}

impl DeadLetter {
    /// Reads a dead letter; fields that do not read are left empty.
    pub(crate) fn from_entry(entry: &StreamId) -> DeadLetter {
        let text = |name: &str| {
            entry::bytes(&entry.map, name)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        DeadLetter {
            entry: text("entry"),
            seq: entry::number(&entry.map, "seq").ok(),
            reason: text("reason"),
            agent: text("agent"),
            error: entry::bytes(&entry.map, "err")
                .ok()
                .and_then(|b| entry::decode_error(b).ok()),
        }
    }
}
