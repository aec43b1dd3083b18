//! Retired workers, reaped off the supervisors' path.
//!
//! A worker that is let go (after its last task, or when the pool shuts down) is asked
//! to exit and handed to the pool's one [`Reaper`] thread, which gives it `kill_grace`
//! to do so, then kills its group; either way it is reaped. Its slot meanwhile starts
//! the next worker, so recycling a worker costs a start, not a start plus an exit. The
//! pool waits for the reaper before `join`, `terminate` or drop return.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::process::WorkerProcess;

/// How often the reaper looks at the workers it holds.
const POLL: Duration = Duration::from_millis(1);

/// A worker asked to exit, and when its grace runs out.
#[derive(Debug)]
struct Retiree {
    process: WorkerProcess,
    deadline: Instant,
}

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
        tx: Sender<Retiree>,
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
    pub(crate) fn retire(&self, process: WorkerProcess, grace: Duration) {
        let retiree = Retiree {
            process,
            deadline: Instant::now() + grace,
        };
        let refused = {
            let mut state = lock(&self.state);
            if matches!(*state, Intake::NotStarted) {
                *state = self.start_thread().unwrap_or(Intake::Closed);
            }
            match &*state {
                Intake::Running { tx, .. } => tx.send(retiree).err().map(|e| e.0),
                _ => Some(retiree),
            }
        };
        // After `finish` (or if the thread is gone), reap here.
        if let Some(mut retiree) = refused {
            retiree.process.start_output();
            retiree.process.wait_or_kill(grace);
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

fn reap(intake: &Receiver<Retiree>, hurry: &AtomicBool) {
    let mut pending: Vec<Retiree> = Vec::new();
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
        let now = Instant::now();
        let hurry = hurry.load(Ordering::SeqCst);
        pending.retain_mut(|r| {
            if r.process.try_wait().is_some() {
                return false;
            }
            // A worker held up by a full pipe until now gets a round more.
            let unblocked = r.process.start_output_written();
            if hurry || (now >= r.deadline && !unblocked) {
                r.process.kill();
                return false;
            }
            true
        });
        if !pending.is_empty() {
            thread::sleep(POLL);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
