//! Which consumers of a run's group to forget: those of agents gone for good. Every
//! agent has a consumer name of its own, never reused, so without this the group
//! would keep one per agent that ever served it. A pure decision, and the command
//! that carries it out.

use std::time::Duration;

use crate::keys::{Keys, GROUP};

/// Deletes the consumer `ARGV[2]` of the group `ARGV[1]` of the stream `KEYS[1]` if it
/// holds nothing; replies -1 if it holds something. Deleting a consumer drops its
/// pending entries from the group: one the agent took between the look that found it
/// silent and the deletion would be in nobody's care, never taken up again if that
/// agent died or released it. So the check and the deletion are one.
const FORGET_IF_EMPTY: &str = r"
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #pending > 0 then
  return -1
end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
";

/// How many leases a consumer must have been silent, with nothing pending, to be
/// forgotten. A consumer with nothing pending holds nothing, so forgetting one whose
/// agent still lives costs nothing: the server makes it again at its next read that
/// gets an entry (Redis 7.0 counts only such reads as a consumer's activity).
pub(crate) const SILENT_LEASES: u32 = 20;

/// Whether a consumer with `pending` deliveries, silent for `idle`, in a run whose
/// agents' leases are `lease`, is forgotten.
pub(crate) fn is_forgotten(pending: usize, idle: Duration, lease: Duration) -> bool {
    pending == 0 && idle >= silence(lease)
}

/// The command that forgets `consumer` of a run's group, unless it holds something by
/// then.
pub(crate) fn forget(keys: &Keys, consumer: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(FORGET_IF_EMPTY)
        .arg(1)
        .arg(&keys.tasks)
        .arg(GROUP)
        .arg(consumer);
    cmd
}

/// How long a consumer must be silent to be forgotten.
pub(crate) fn silence(lease: Duration) -> Duration {
    lease.saturating_mul(SILENT_LEASES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_long_silent_consumer_with_nothing_pending_is_forgotten() {
        let lease = Duration::from_secs(5);
        assert!(is_forgotten(0, Duration::from_secs(100), lease));
        assert!(!is_forgotten(0, Duration::from_secs(99), lease));
        // Deliveries pending are the reclaim's to take first.
        assert!(!is_forgotten(1, Duration::from_secs(10_000), lease));
    }
}
