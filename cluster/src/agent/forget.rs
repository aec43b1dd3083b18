//! Which consumers of a run's group to forget: those of agents gone for good. Every
//! agent has a consumer name of its own, never reused, so without this the group
//! would keep one per agent that ever served it. A pure decision.

use std::time::Duration;

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
