//! [`Starter`]: how a slot gets a worker process — the one seam between the supervisor
//! and `launch/`. The pool's is the `Spawner` (exec, or the fork server); the
//! supervisor's tests put a scripted stand-in there and drive every state of the slot
//! without a process (`scripted.rs`), as tokio's reaper is tested against a `MockWait`.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;

use super::process::WorkerProcess;
use crate::launch::spawner::Spawning;
use crate::link::ParentEnd;

/// Starts workers for the slots.
pub(crate) trait Starter: Send + Sync + fmt::Debug {
    /// The program workers run, for messages.
    fn program(&self) -> String;
    /// A worker already started for a slot's first start, with its link (its `Setup`
    /// in it already); its process comes from [`finish`](Self::finish).
    fn take_prestarted(&self) -> Option<(ParentEnd, Spawning)>;
    /// Starts a worker on `socket`, its end of a new link that holds its `Setup`.
    fn start(&self, socket: OwnedFd) -> io::Result<Spawning>;
    /// The process of a worker on its way. A slot may send into the link between
    /// [`start`](Self::start) and this.
    fn finish(&self, spawning: Spawning) -> io::Result<WorkerProcess>;
}
