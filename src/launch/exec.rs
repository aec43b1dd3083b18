//! Starting a worker: the command line every launch mode shares, and the choice between
//! exec'ing a worker directly and asking the fork server for one.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio as StdStdio};
use std::sync::Arc;
use std::time::Duration;

use super::fork::ForkServer;
use super::fork::{Asked, Prestarted};
use super::{Launch, Stdio, ENV_LIFELINE, ENV_SERVER};
use crate::link::ParentEnd;
use crate::sys::{self, Lifeline};
use crate::worker::process::WorkerProcess;

/// The settings of the builder that shape a worker's command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpawnSettings {
    pub(crate) launch: Launch,
    pub(crate) env: Vec<(OsString, Option<OsString>)>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) stdout: Stdio,
    pub(crate) stderr: Stdio,
}

/// The program, arguments, environment and streams of an exec'd process: a worker, or
/// a fork server (whose forked workers inherit all of it but stderr).
#[derive(Debug, Clone)]
pub(crate) struct CommandSpec {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    cwd: Option<PathBuf>,
    stdout: Stdio,
    stderr: Stdio,
    lifeline: &'static Lifeline,
}

impl CommandSpec {
    /// The executable, for error messages.
    pub(crate) fn program(&self) -> String {
        self.program.display().to_string()
    }

    pub(crate) fn stdout(&self) -> &Stdio {
        &self.stdout
    }

    pub(crate) fn stderr(&self) -> &Stdio {
        &self.stderr
    }

    /// In a process forked without exec to stand in for this command: takes on its
    /// environment changes and working directory. The caller is single-threaded.
    pub(crate) fn apply_env_and_cwd(&self) -> io::Result<()> {
        for (key, value) in &self.env {
            match value {
                Some(value) => std::env::set_var(key, value),
                None => std::env::remove_var(key),
            }
        }
        if let Some(cwd) = &self.cwd {
            std::env::set_current_dir(cwd)?;
        }
        Ok(())
    }

    /// The command, short of the variable that tells the child its role.
    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        for (key, value) in &self.env {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        cmd.env(ENV_LIFELINE, self.lifeline.child_fd().to_string())
            .stdin(StdStdio::null())
            .stdout(match self.stdout {
                Stdio::Inherit => StdStdio::inherit(),
                Stdio::Null => StdStdio::null(),
                Stdio::Capture(_) => StdStdio::piped(),
            })
            // Always piped: the parent keeps the tail for crash reports and forwards it.
            .stderr(StdStdio::piped());
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        sys::own_process_group(&mut cmd);
        self.lifeline.attach(&mut cmd);
        cmd
    }
}

/// Everything needed to start one more worker process.
#[derive(Debug, Clone)]
pub(crate) struct Spawner {
    command: CommandSpec,
    fork_server: Option<Arc<ForkServer>>,
}

impl Spawner {
    /// With `Launch::ForkServer`, a program still single-threaded forks its first
    /// `workers` workers itself, whose links start with `setup` (see
    /// [`take_prestarted`](Spawner::take_prestarted)).
    pub(crate) fn new(
        settings: SpawnSettings,
        start_timeout: Duration,
        workers: usize,
        setup: &[u8],
    ) -> io::Result<Spawner> {
        let fork = settings.launch.is_fork_server();
        let fork_here = settings.launch == Launch::ForkServer;
        let (program, args) = match settings.launch {
            Launch::CurrentExe | Launch::ForkServer => {
                (std::env::current_exe()?, super::test_entry::worker_args())
            }
            Launch::Binary(path) | Launch::ForkServerBinary(path) => (path, Vec::new()),
        };
        let command = CommandSpec {
            program,
            args,
            env: settings.env,
            cwd: settings.cwd,
            stdout: settings.stdout,
            stderr: settings.stderr,
            lifeline: Lifeline::get()?,
        };
        let fork_server = fork.then(|| Arc::new(ForkServer::new(command.clone(), start_timeout)));
        if let (Some(server), true) = (&fork_server, fork_here) {
            server.fork_first_workers(workers, setup);
        }
        Ok(Spawner {
            command,
            fork_server,
        })
    }

    /// The executable workers run, for error messages.
    pub(crate) fn program(&self) -> String {
        match self.fork_server {
            Some(_) => format!("{} (fork server)", self.command.program()),
            None => self.command.program(),
        }
    }

    /// A worker already started for a slot's first start, with its link; its process
    /// comes from [`finish_prestarted`](Spawner::finish_prestarted).
    pub(crate) fn take_prestarted(&self) -> Option<(ParentEnd, Prestarted)> {
        self.fork_server.as_ref()?.take_prestarted()
    }

    /// The process of a worker forked when the pool was built.
    pub(crate) fn finish_prestarted(&self, started: Prestarted) -> WorkerProcess {
        started.finish(&self.command)
    }

    /// Starts a worker on the link socket `socket` (its end of the pair): execs it, or
    /// asks the fork server for it, whose answer [`finish`](Spawner::finish) waits for.
    pub(crate) fn start(&self, socket: OwnedFd) -> io::Result<Starting> {
        if let Some(server) = &self.fork_server {
            return server.ask(socket).map(Starting::Asked);
        }
        let mut cmd = self.command.command();
        cmd.env(ENV_SERVER, socket.as_raw_fd().to_string());
        sys::inherit_fd(&mut cmd, socket.as_raw_fd());
        let child = spawn_retrying_busy(&mut cmd)?;
        drop(socket);
        Ok(Starting::Running(WorkerProcess::exec(
            child,
            self.command.stderr(),
            self.command.stdout(),
        )))
    }

    /// The process of a worker [`start`](Spawner::start) started.
    pub(crate) fn finish(&self, starting: Starting) -> io::Result<WorkerProcess> {
        match starting {
            Starting::Running(process) => Ok(process),
            Starting::Asked(asked) => asked.finish(&self.command),
        }
    }
}

/// A worker on its way: exec'd already, or asked of the fork server.
#[derive(Debug)]
pub(crate) enum Starting {
    Running(WorkerProcess),
    Asked(Asked),
}

/// Spawns `cmd`, trying again a few times while its executable is "busy" (`ETXTBSY`).
/// A program written just before it is run can be busy for a moment: a process forked
/// meanwhile by another thread holds the writer's descriptor until it execs.
pub(crate) fn spawn_retrying_busy(cmd: &mut Command) -> io::Result<std::process::Child> {
    let mut pause = Duration::from_millis(1);
    for _ in 0..6 {
        match cmd.spawn() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(pause);
                pause *= 2;
            }
            other => return other,
        }
    }
    cmd.spawn()
}
