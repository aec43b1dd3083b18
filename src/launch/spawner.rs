//! [`Spawner`]: starting one more worker, by exec'ing it or by asking the fork server
//! for one, and [`Spawning`], a worker on its way until its process is known.
//!
//! [`Starter`] is how a slot gets a worker: the one seam between the supervisor and
//! this folder. The pool's starter is the `Spawner`; the supervisor's tests put a
//! scripted stand-in there and drive every state of the slot without a process
//! (`slot/scripted.rs`), as tokio's reaper is tested against a `MockWait`.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use super::exec::{spawn_retrying_busy, CommandSpec, SpawnSettings};
use super::fork::{Asked, ForkServer, Prestarted};
use super::Launch;
use crate::child::test_entry::worker_args;
use crate::link::ParentEnd;
use crate::output::label::Writer;
use crate::slot::process::WorkerProcess;
use crate::sys;
use crate::wire::env;

/// Everything needed to start one more worker process.
#[derive(Debug, Clone)]
pub(crate) struct Spawner {
    command: CommandSpec,
    fork_server: Option<Arc<ForkServer>>,
}

impl Spawner {
    /// With `Launch::ForkServer`, a program still single-threaded forks its first
    /// `workers` workers itself, whose links start with `setup` (see
    /// [`take_prestarted`](Starter::take_prestarted)).
    pub(crate) fn new(
        settings: SpawnSettings,
        start_timeout: Duration,
        workers: usize,
        setup: &[u8],
    ) -> io::Result<Spawner> {
        let fork = settings.launch.is_fork_server();
        let fork_here = settings.launch == Launch::ForkServer;
        let (program, args) = match &settings.launch {
            Launch::CurrentExe | Launch::ForkServer => (std::env::current_exe()?, worker_args()),
            Launch::Binary(path) | Launch::ForkServerBinary(path) => (path.clone(), Vec::new()),
        };
        let command = CommandSpec::new(&settings, program, args)?;
        let fork_server = fork.then(|| Arc::new(ForkServer::new(command.clone(), start_timeout)));
        if let (Some(server), true) = (&fork_server, fork_here) {
            server.fork_first_workers(workers, setup);
        }
        Ok(Spawner {
            command,
            fork_server,
        })
    }
}

impl Starter for Spawner {
    /// The executable workers run, for error messages.
    fn program(&self) -> String {
        match self.fork_server {
            Some(_) => format!("{} (fork server)", self.command.program()),
            None => self.command.program(),
        }
    }

    /// A worker already started for a slot's first start, with its link; its process
    /// comes from [`finish`](Starter::finish).
    fn take_prestarted(&self) -> Option<(ParentEnd, Spawning)> {
        let (link, started) = self.fork_server.as_ref()?.take_prestarted()?;
        Some((link, Spawning::Prestarted(started)))
    }

    /// Starts a worker on the link socket `socket` (its end of the pair): execs it, or
    /// asks the fork server for it, whose answer [`finish`](Starter::finish) waits for.
    fn start(&self, socket: OwnedFd) -> io::Result<Spawning> {
        if let Some(server) = &self.fork_server {
            return server.ask(socket).map(Spawning::Asked);
        }
        let mut cmd = self.command.command();
        cmd.env(env::WORKER, socket.as_raw_fd().to_string());
        sys::inherit_fd(&mut cmd, socket.as_raw_fd());
        let child = spawn_retrying_busy(&mut cmd)?;
        drop(socket);
        Ok(Spawning::Exec(WorkerProcess::exec(
            child,
            Writer::Worker,
            self.command.stderr(),
            self.command.stdout(),
        )))
    }

    /// The process of a worker on its way.
    fn finish(&self, spawning: Spawning) -> io::Result<WorkerProcess> {
        match spawning {
            Spawning::Exec(process) => Ok(process),
            Spawning::Asked(asked) => asked.finish(&self.command),
            Spawning::Prestarted(started) => Ok(started.finish(&self.command)),
        }
    }
}

/// A worker on its way, until its process is known: exec'd already, asked of the fork
/// server (whose answer names it), or forked when the pool was built.
#[derive(Debug)]
pub(crate) enum Spawning {
    Exec(WorkerProcess),
    Asked(Asked),
    Prestarted(Prestarted),
}

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
