//! What a test looks at: a run's outcomes, and who holds its tasks on the server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use procpool::Task;
use procpool_cluster::{Outcome, Run};

/// A connection for poking at the server directly.
pub(crate) fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("the url reads")
        .get_connection()
        .expect("the server answers")
}

/// Collects every outcome of `run`, checking each task has exactly one.
pub(crate) fn collect<T: Task>(run: &mut Run<T>) -> HashMap<u64, Outcome<T::Output>> {
    let mut outcomes = HashMap::new();
    for outcome in run.outcomes() {
        let outcome = outcome.expect("the server answers");
        let seq = outcome.seq;
        assert!(outcomes.insert(seq, outcome).is_none(), "task {seq} twice");
    }
    outcomes
}

/// Polls `cond` until it holds or `limit` passes; whether it held.
pub(crate) fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The consumers that hold a delivery of the run's tasks, with how many each. Panics
/// if the server cannot say (so that "nobody holds it" is never an unanswered query).
pub(crate) fn pending_by_consumer(url: &str, run: &str) -> HashMap<String, usize> {
    let reply: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(format!("pp:{{{run}}}:tasks"))
        .arg("agents")
        .arg("-")
        .arg("+")
        .arg(10_000)
        .query(&mut connect(url))
        .expect("the server lists the run's pending deliveries");
    let mut by = HashMap::new();
    for p in reply.ids {
        *by.entry(p.consumer).or_default() += 1;
    }
    by
}

/// Whether some consumer of `node` holds a delivery of the run.
pub(crate) fn held_by(url: &str, run: &str, node: &str) -> bool {
    pending_by_consumer(url, run)
        .keys()
        .any(|c| c.starts_with(&format!("{node}/")))
}
