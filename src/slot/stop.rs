//! How a worker process is stopped: one state machine ([`Stop`]) and one pure function
//! ([`next`]) that decides each step, shared by every way a worker goes.
//!
//! A timeout terminates its worker (SIGTERM to the group, a grace, SIGKILL); a cancel,
//! the memory limit, a bad frame or the pool's `terminate` kill it at once; after a
//! crash the slot waits a grace for the exit; a retired worker is asked to exit by a
//! `Shutdown` frame and has a grace to do so. All of them end the same way: SIGKILL to
//! the group (whatever the worker left behind in it goes too), then the one reap.
//! [`WorkerProcess`](super::process::WorkerProcess) holds the state and takes the
//! steps; its slot drives it to the end while it waits, and the reaper thread steps
//! each of its retirees once a round. Neither has rules of its own, so they cannot
//! drift apart, and the rules are tested here without processes.
//!
//! ```text
//! Running ─┬─ Shutdown sent, or a crash awaited ─▶ Asked { deadline } ───────┐
//!          ├─ SIGTERM sent ──────────────────▶ Terminated { deadline } ──────┤
//!          │                            ended, past the deadline, or hurry:  │
//!          └─ ended, or hurry: SIGKILL ─▶ Killed ◀─────────── SIGKILL ───────┘
//!                                           │
//!                                           └─ reap ─▶ Reaped(status)
//! ```

use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

/// How often a stop looks for the exit: a worker's end comes with no notice, so it is
/// polled, here and nowhere else.
pub(crate) const POLL: Duration = Duration::from_millis(1);

/// Where a worker process is on its way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Not being stopped. It is still looked at (`try_wait`): one found ended is
    /// killed and reaped like any other.
    Running,
    /// Asked to exit, with no signal: by a `Shutdown` frame or the end of its socket,
    /// or left to end by itself after a crash. It has until `deadline`.
    Asked { deadline: Instant },
    /// SIGTERM sent to its group. It has until `deadline`.
    Terminated { deadline: Instant },
    /// SIGKILL sent to its group. It cannot refuse: only the reap is left, which
    /// waits just for the kernel (and, for a forked worker, the fork server's word).
    Killed,
    /// Reaped, and how it ended. Its pid, which was its group id, may now be anyone's,
    /// so nothing is signalled again.
    Reaped(ExitStatus),
}

/// What is known of a worker when its next step is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    /// It has ended (seen without reaping it, so its group id stays reserved).
    pub(crate) exited: bool,
    /// A reader started just now on an output pipe that held bytes: a worker blocked
    /// on a full pipe can move again, and gets one more poll to end by itself.
    pub(crate) unblocked: bool,
    /// No more grace for anyone: the pool is terminating, or the worker is to be
    /// killed now.
    pub(crate) hurry: bool,
    pub(crate) now: Instant,
}

/// The next step of a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing to do before `until` (none: it runs, and nobody is stopping it). It is
    /// looked at again then, or at the next poll, whichever comes first.
    Wait { until: Option<Instant> },
    /// SIGKILL to its group, now.
    Kill,
    /// Reap it (it has been killed, so this does not wait on the worker's will).
    Reap,
    /// Nothing left: it is reaped.
    Done(ExitStatus),
}

/// Where a stop stands once every step due now is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Waiting for the worker, as [`Step::Wait`] says.
    Waiting {
        until: Option<Instant>,
    },
    Reaped(ExitStatus),
}

/// The next step of a worker in state `stop`, given what is `seen` of it.
///
/// A worker that has ended is still killed before its reap: it may have left
/// processes in its group (holding its socket or pipes open), and until the reap its
/// group id cannot be anyone else's. One that runs past its deadline is killed, unless
/// its output was just unblocked: then it has one more poll to end by itself.
pub(crate) fn next(stop: Stop, seen: Seen) -> Step {
    match stop {
        Stop::Reaped(status) => Step::Done(status),
        Stop::Killed => Step::Reap,
        _ if seen.exited || seen.hurry => Step::Kill,
        Stop::Running => Step::Wait { until: None },
        Stop::Asked { deadline } | Stop::Terminated { deadline } => {
            if seen.now < deadline {
                Step::Wait {
                    until: Some(deadline),
                }
            } else if seen.unblocked {
                Step::Wait {
                    until: Some(seen.now + POLL),
                }
            } else {
                Step::Kill
            }
        }
    }
}

/// Sleeps until the next look at a stop that waits `until`: one poll at most, less if
/// the deadline comes first.
pub(crate) fn pause(until: Option<Instant>) {
    let left = until.map_or(POLL, |until| {
        until.saturating_duration_since(Instant::now()).min(POLL)
    });
    thread::sleep(left);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn seen(now: Instant) -> Seen {
        Seen {
            exited: false,
            unblocked: false,
            hurry: false,
            now,
        }
    }

    fn stopping(deadline: Instant) -> [Stop; 2] {
        [Stop::Asked { deadline }, Stop::Terminated { deadline }]
    }

    #[test]
    fn a_running_worker_is_left_alone_until_it_ends() {
        let now = Instant::now();
        assert_eq!(next(Stop::Running, seen(now)), Step::Wait { until: None });
        let unblocked = Seen {
            unblocked: true,
            ..seen(now)
        };
        assert_eq!(next(Stop::Running, unblocked), Step::Wait { until: None });
        let exited = Seen {
            exited: true,
            ..seen(now)
        };
        assert_eq!(next(Stop::Running, exited), Step::Kill);
    }

    #[test]
    fn a_worker_within_its_grace_is_waited_for_until_the_deadline() {
        let now = Instant::now();
        let deadline = now + Duration::from_millis(500);
        for stop in stopping(deadline) {
            let until = Some(deadline);
            assert_eq!(next(stop, seen(now)), Step::Wait { until });
            let unblocked = Seen {
                unblocked: true,
                ..seen(now)
            };
            assert_eq!(next(stop, unblocked), Step::Wait { until });
        }
    }

    #[test]
    fn a_worker_that_ends_within_its_grace_is_killed_and_reaped_at_once() {
        let now = Instant::now();
        let exited = Seen {
            exited: true,
            ..seen(now)
        };
        for stop in stopping(now + Duration::from_secs(10)) {
            assert_eq!(next(stop, exited), Step::Kill);
        }
    }

    #[test]
    fn a_worker_past_its_deadline_is_killed() {
        let now = Instant::now();
        for deadline in [now, now - Duration::from_millis(1)] {
            for stop in stopping(deadline) {
                assert_eq!(next(stop, seen(now)), Step::Kill);
            }
        }
    }

    #[test]
    fn an_unblocked_worker_past_its_deadline_gets_one_more_poll() {
        let now = Instant::now();
        let unblocked = Seen {
            unblocked: true,
            ..seen(now)
        };
        for stop in stopping(now - Duration::from_millis(1)) {
            let until = Some(now + POLL);
            assert_eq!(next(stop, unblocked), Step::Wait { until });
            // Ended meanwhile, or in a hurry: no round more.
            let exited = Seen {
                exited: true,
                ..unblocked
            };
            assert_eq!(next(stop, exited), Step::Kill);
            let hurry = Seen {
                hurry: true,
                ..unblocked
            };
            assert_eq!(next(stop, hurry), Step::Kill);
        }
    }

    #[test]
    fn in_a_hurry_every_unreaped_worker_is_killed_now() {
        let now = Instant::now();
        let hurry = Seen {
            hurry: true,
            ..seen(now)
        };
        assert_eq!(next(Stop::Running, hurry), Step::Kill);
        for stop in stopping(now + Duration::from_secs(10)) {
            assert_eq!(next(stop, hurry), Step::Kill);
        }
    }

    #[test]
    fn a_killed_worker_is_reaped_and_a_reaped_one_is_done() {
        let now = Instant::now();
        let status = ExitStatus::from_raw(9);
        for seen in [
            seen(now),
            Seen {
                exited: true,
                unblocked: true,
                hurry: true,
                now,
            },
        ] {
            assert_eq!(next(Stop::Killed, seen), Step::Reap);
            assert_eq!(next(Stop::Reaped(status), seen), Step::Done(status));
        }
    }

    #[test]
    fn a_pause_lasts_one_poll_at_most_and_ends_at_the_deadline() {
        let start = Instant::now();
        pause(Some(start));
        pause(Some(start - Duration::from_secs(1)));
        assert!(start.elapsed() < Duration::from_secs(1));
        let start = Instant::now();
        pause(None);
        assert!(start.elapsed() >= POLL);
    }
}
