//! The lease of a delivery, renewed or released only while the delivery is still this
//! agent's. `XCLAIM` alone cannot say so: with no minimum idle time it takes the
//! entry from whoever holds it. Between an agent's look at the pending entries and
//! its claim, another agent may have taken the task over (this one's lease lapsed
//! while it was stopped or cut off); the claim would then take the task back from a
//! living agent, which stops renewing it, and a third delivery follows. So the look
//! and the claim are one script, run atomically by the server.

use crate::keys::{Keys, GROUP};

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
