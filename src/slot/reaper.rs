//! Retired workers, reaped off the supervisors' path.
//!
//! A worker that is let go (after its last task, or when the pool shuts down) is asked
//! to exit and handed to the pool's one [`Reaper`] thread, which gives it `kill_grace`
//! to do so, then kills its group; either way it is reaped. Its slot meanwhile starts
//! the next worker, so recycling a worker costs a start, not a start plus an exit. The
//! pool waits for the reaper before `join`, `terminate` or drop return.
//!
//! The reaper keeps no rules of its own: each retiree's stop is the one state machine
//! of [`stop`], started as `Asked` when it retires and advanced once a round, as its
//! slot would while waiting for it.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::process::WorkerProcess;
use super::stop::{self, Progress};

/// The thread that reaps retired workers, started with the first retiree (a pool
/// that never retires a worker never starts it, and a pool's start is one thread
/// shorter).
#[derive(Debug)]
pub(crate) struct Reaper {
    state: Mutex<Intake>,
    /// Set when the pool terminates: no more grace for anyone.
    hurry: Arc<AtomicBool>,
}

#[derive(Debug)]
enum Intake {
    /// No worker retired yet.
    NotStarted,
    Running {
        tx: Sender<WorkerProcess>,
        thread: JoinHandle<()>,
    },
    /// `finish` was called (or the thread could not start): retirees are reaped by the
    /// caller.
    Closed,
}

impl Reaper {
    pub(crate) fn new() -> Reaper {
        Reaper {
            state: Mutex::new(Intake::NotStarted),
            hurry: Arc::new(AtomicBool::new(false)),
        }
    }

    fn start_thread(&self) -> io::Result<Intake> {
        let (tx, rx) = mpsc::channel();
        let hurry = self.hurry.clone();
        let thread = thread::Builder::new()
            .name("procpool-reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || reap(&rx, &hurry))?;
        Ok(Intake::Running { tx, thread })
    }

    /// Takes a worker that has been asked to exit: it gets `grace` to do so.
    pub(crate) fn retire(&self, mut process: WorkerProcess, grace: Duration) {
        process.ask(grace);
        let refused = {
            let mut state = lock(&self.state);
            if matches!(*state, Intake::NotStarted) {
                *state = self.start_thread().unwrap_or(Intake::Closed);
            }
            match &*state {
                Intake::Running { tx, .. } => tx.send(process).err().map(|e| e.0),
                _ => Some(process),
            }
        };
        // After `finish` (or if the thread is gone), reap here: the same stop, with the
        // deadline it was given above.
        if let Some(mut process) = refused {
            process.start_output();
            process.wait_or_kill(grace);
        }
    }

    /// Waits until every retired worker is reaped; with `hurry`, kills them now instead
    /// of waiting out their grace.
    pub(crate) fn finish(&self, hurry: bool) {
        if hurry {
            self.hurry.store(true, Ordering::SeqCst);
        }
        let state = std::mem::replace(&mut *lock(&self.state), Intake::Closed);
        if let Intake::Running { tx, thread } = state {
            drop(tx);
            let _ = thread.join();
        }
    }
}

fn reap(intake: &Receiver<WorkerProcess>, hurry: &AtomicBool) {
    let mut pending: Vec<WorkerProcess> = Vec::new();
    loop {
        if pending.is_empty() {
            match intake.recv() {
                Ok(retiree) => pending.push(retiree),
                Err(_) => return,
            }
        }
        // Empty or disconnected alike: finish what is pending.
        while let Ok(retiree) = intake.try_recv() {
            pending.push(retiree);
        }
        let hurry = hurry.load(Ordering::SeqCst);
        // The soonest any of them needs a look; the next round comes then, or sooner.
        let mut soonest: Option<Instant> = None;
        pending.retain_mut(|retiree| match retiree.advance(hurry) {
            Progress::Reaped(_) => false,
            Progress::Waiting { until } => {
                soonest = match (soonest, until) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                true
            }
        });
        if !pending.is_empty() {
            stop::pause(soonest);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::process::tests::{log, mock};

    /// A long grace, which no test waits out.
    const LONG: Duration = Duration::from_secs(60);

    #[test]
    fn a_retiree_that_stays_is_killed_when_its_grace_runs_out() {
        let reaper = Reaper::new();
        let (process, child) = mock(false);
        let grace = Duration::from_millis(20);
        let start = Instant::now();
        reaper.retire(process, grace);
        reaper.finish(false);
        assert!(start.elapsed() >= grace);
        assert_eq!(log(&child), ["SIGKILL", "reap"]);
    }

    #[test]
    fn a_retiree_that_exits_is_reaped_without_waiting_out_its_grace() {
        let reaper = Reaper::new();
        let (process, child) = mock(true);
        let start = Instant::now();
        reaper.retire(process, LONG);
        reaper.finish(false);
        assert!(start.elapsed() < LONG / 2);
        assert_eq!(log(&child), ["SIGKILL", "reap"]);
    }

    #[test]
    fn a_hurry_kills_retirees_in_their_grace() {
        let reaper = Reaper::new();
        let (first, first_child) = mock(false);
        let (second, second_child) = mock(false);
        let start = Instant::now();
        reaper.retire(first, LONG);
        reaper.retire(second, LONG);
        reaper.finish(true);
        assert!(start.elapsed() < LONG / 2);
        assert_eq!(log(&first_child), ["SIGKILL", "reap"]);
        assert_eq!(log(&second_child), ["SIGKILL", "reap"]);
    }

    #[test]
    fn after_finish_a_retiree_is_seen_out_by_its_caller() {
        let reaper = Reaper::new();
        reaper.finish(false);
        let (process, child) = mock(true);
        reaper.retire(process, LONG);
        assert_eq!(log(&child), ["SIGKILL", "reap"]);
    }
}
