//! The submitter, in the process that sends a run's tasks and collects their outcomes.

pub(crate) mod outcome;
pub(crate) mod run;
