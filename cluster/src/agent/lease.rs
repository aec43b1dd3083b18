//! The lease of a delivery, renewed or released only while the delivery is still this
//! agent's. `XCLAIM` alone cannot say so: with no minimum idle time it takes the
//! entry from whoever holds it. Between an agent's look at the pending entries and
//! its claim, another agent may have taken the task over (this one's lease lapsed
//! while it was stopped or cut off); the claim would then take the task back from a
//! living agent, which stops renewing it, and a third delivery follows. So the look
//! and the claim are one script, run atomically by the server.
//!
//! Each agent has a lease of its own, and renews at a third of it: a task is lapsed
//! when it was not renewed for its owner's lease, not for the lease of the agent
//! looking. So an agent's consumer name ends with its lease, for the others to read.

use std::time::Duration;

use crate::keys::{Keys, GROUP};

/// How a consumer name gives its agent's lease: `…/lease=<ms>ms`.
const LEASE_TAG: (&str, &str) = ("lease=", "ms");

/// For each entry id from `ARGV[4]` on that is pending in the group `ARGV[1]` of the
/// stream `KEYS[1]` with the consumer `ARGV[2]`: sets its idle time to `ARGV[3]`
/// milliseconds, without counting a delivery. Leaves the others alone; replies how
/// many were still that consumer's.
const KEEP_IF_MINE: &str = r"
local kept = 0
for i = 4, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if pending[1] and pending[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    kept = kept + 1
  end
end
return kept
";

/// The command that sets the idle time of the deliveries `entries` of a run to
/// `idle_ms` (0 renews a lease, a huge one releases the delivery for any agent),
/// those still `agent`'s only; it replies how many were. It counts no delivery.
pub(crate) fn keep<'e>(
    keys: &Keys,
    agent: &str,
    idle_ms: u64,
    entries: impl IntoIterator<Item = &'e String>,
) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(KEEP_IF_MINE)
        .arg(1)
        .arg(&keys.tasks)
        .arg(GROUP)
        .arg(agent)
        .arg(idle_ms);
    for entry in entries {
        cmd.arg(entry);
    }
    cmd
}

/// The end of the consumer name of an agent whose lease is `lease`: `/lease=<ms>ms`.
pub(crate) fn name_tag(lease: Duration) -> String {
    let millis = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    format!("/{}{millis}{}", LEASE_TAG.0, LEASE_TAG.1)
}

/// The lease of the agent named `consumer`, if its name gives one (a name read from
/// the server: anything may be there).
pub(crate) fn owner_lease(consumer: &str) -> Option<Duration> {
    let (_, last) = consumer.rsplit_once('/')?;
    let millis = last
        .strip_prefix(LEASE_TAG.0)?
        .strip_suffix(LEASE_TAG.1)?
        .parse()
        .ok()?;
    Some(Duration::from_millis(millis))
}

/// Whether a delivery held by `owner` and idle for `idle` has lapsed, for an agent
/// whose own lease is `lease`: not renewed for the owner's lease, nor for this agent's
/// (the only one known when the owner's name gives none, and the least wait ever).
pub(crate) fn is_lapsed(idle: Duration, owner: &str, lease: Duration) -> bool {
    idle >= lease.max(owner_lease(owner).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_s_name_gives_its_lease_back() {
        let name = format!("node/12/ab/0{}", name_tag(Duration::from_millis(2500)));
        assert_eq!(owner_lease(&name), Some(Duration::from_millis(2500)));
        for garbage in [
            "",
            "node/12/ab/0",
            "lease=5ms",
            "n/lease=ms",
            "n/lease=-1ms",
            "n/lease=9",
        ] {
            assert_eq!(owner_lease(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn a_task_lapses_by_its_owner_s_lease_when_longer_than_one_s_own() {
        let second = Duration::from_secs(1);
        let long = format!("a/1/f/0{}", name_tag(5 * second));
        let short = format!("b/1/f/0{}", name_tag(second / 10));
        // A 1 s agent leaves a 5 s agent's task alone until 5 s without renewal.
        assert!(!is_lapsed(2 * second, &long, second));
        assert!(is_lapsed(5 * second, &long, second));
        // A shorter owner's lease does not shorten this agent's.
        assert!(!is_lapsed(second / 2, &short, second));
        assert!(is_lapsed(second, &short, second));
        // A name without a lease: this agent's own.
        assert!(is_lapsed(second, "old-name", second));
        assert!(!is_lapsed(second / 2, "old-name", second));
    }
}
