//! [`Pacer`]: when a map's bar is brought up to date. A map of tiny tasks yields tens
//! of millions of outcomes a second, and a clock read costs about as much as one of
//! them, so the pacer reads the clock once every `stride` outcomes, a stride sized at
//! each read from the rate since the last refresh, for a few reads a refresh period. A
//! fault is shown at once (at most once a millisecond, so a map that fails every task
//! still costs little).

use std::time::{Duration, Instant};

/// How often the bar's position and counts are brought up to date: indicatif draws a
/// terminal bar at most 20 times a second.
pub(crate) const REFRESH: Duration = Duration::from_millis(50);
/// The least time between refreshes for a fault.
const FAULT_GAP: Duration = Duration::from_millis(1);
/// Clock reads per refresh period, at a steady rate.
const READS_PER_REFRESH: u128 = 4;
/// Most outcomes between clock reads: were the rate to fall from millions a second to
/// a few, at most this many outcomes come before the pacer sees it.
const MAX_STRIDE: u64 = 1024;

/// Decides, outcome by outcome, whether the bar is due for a refresh.
#[derive(Debug)]
pub(crate) struct Pacer {
    /// The last refresh.
    last: Instant,
    /// Outcomes since the last refresh.
    since: u64,
    /// Outcomes before the next clock read.
    countdown: u64,
    /// Outcomes between clock reads.
    stride: u64,
    /// A fault came that the bar does not show yet.
    owed: bool,
}

impl Pacer {
    /// A pacer whose bar was last brought up to date at `now`.
    pub(crate) fn new(now: Instant) -> Pacer {
        Pacer {
            last: now,
            since: 0,
            countdown: 1,
            stride: 1,
            owed: false,
        }
    }

    /// An outcome came (`fault`: an error): whether to refresh the bar now. Reads the
    /// clock (`clock`) only on a fault, on a fault owed, or once a stride.
    pub(crate) fn tick(&mut self, fault: bool, clock: impl FnOnce() -> Instant) -> bool {
        self.since += 1;
        self.countdown = self.countdown.saturating_sub(1);
        self.owed |= fault;
        if self.countdown > 0 && !self.owed {
            return false;
        }
        let now = clock();
        let elapsed = now.saturating_duration_since(self.last);
        self.stride = stride(self.since, elapsed);
        let gap = if self.owed { FAULT_GAP } else { REFRESH };
        if elapsed < gap {
            // A fault owed is looked at again at the next outcome.
            self.countdown = if self.owed { 1 } else { self.stride };
            return false;
        }
        self.countdown = self.stride;
        self.since = 0;
        self.last = now;
        self.owed = false;
        true
    }
}

/// Outcomes between clock reads for about [`READS_PER_REFRESH`] reads a refresh period,
/// at the rate of `outcomes` in `elapsed`.
fn stride(outcomes: u64, elapsed: Duration) -> u64 {
    let per_read = REFRESH.as_nanos() / READS_PER_REFRESH;
    let stride = u128::from(outcomes) * per_read / elapsed.as_nanos().max(1);
    stride.clamp(1, u128::from(MAX_STRIDE)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that moves `step` each read, counting its reads.
    struct Clock {
        now: Instant,
        step: Duration,
        reads: u64,
    }

    impl Clock {
        fn new(step: Duration) -> Clock {
            Clock {
                now: Instant::now(),
                step,
                reads: 0,
            }
        }

        fn read(&mut self) -> Instant {
            self.reads += 1;
            self.now += self.step;
            self.now
        }
    }

    #[test]
    fn strides_follow_the_rate() {
        // 1000 outcomes in one refresh period: a read every 250.
        assert_eq!(stride(1000, REFRESH), 250);
        // Slow outcomes: every one is looked at.
        assert_eq!(stride(3, REFRESH * 10), 1);
        assert_eq!(stride(0, Duration::ZERO), 1);
        assert_eq!(stride(u64::MAX, Duration::from_nanos(1)), MAX_STRIDE);
    }

    #[test]
    fn slow_outcomes_refresh_once_a_period() {
        // An outcome every 20 ms: a read each, a refresh every third.
        let mut clock = Clock::new(Duration::from_millis(20));
        let mut pacer = Pacer::new(clock.now);
        let due: Vec<bool> = (0..6).map(|_| pacer.tick(false, || clock.read())).collect();
        assert_eq!(due, [false, false, true, false, false, true]);
        assert_eq!(clock.reads, 6);
    }

    #[test]
    fn fast_outcomes_read_the_clock_a_few_times_a_period() {
        // A million outcomes a second: outcome `i` comes `i` µs in.
        let start = Instant::now();
        let mut pacer = Pacer::new(start);
        let (mut reads, mut refreshes) = (0u64, 0u64);
        for i in 1..=1_000_000 {
            let due = pacer.tick(false, || {
                reads += 1;
                start + Duration::from_micros(i)
            });
            refreshes += u64::from(due);
        }
        // One simulated second: 20 refreshes, a few reads each (more while the stride
        // grows from 1), far from a read per outcome.
        assert!((18..=21).contains(&refreshes), "{refreshes} refreshes");
        assert!(reads < 2_000, "{reads} clock reads");
    }

    #[test]
    fn a_fault_is_shown_at_once_or_at_the_next_outcome() {
        let mut clock = Clock::new(Duration::from_millis(2));
        let mut pacer = Pacer::new(clock.now);
        // 2 ms after the last refresh: past the fault gap.
        assert!(pacer.tick(true, || clock.read()));
        // Right after a refresh, within the gap: owed, and read again next time.
        clock.step = Duration::from_micros(100);
        assert!(!pacer.tick(true, || clock.read()));
        assert!(!pacer.tick(false, || clock.read()));
        clock.step = Duration::from_millis(1);
        assert!(pacer.tick(false, || clock.read()));
        // Shown: plain outcomes wait for the period again.
        assert!(!pacer.tick(false, || clock.read()));
    }
}
