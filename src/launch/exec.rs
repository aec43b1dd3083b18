//! Starting a worker with `exec`: the current executable or a separate binary.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio as StdStdio};

use super::{Launch, Stdio, ENV_LIFELINE, ENV_SERVER};
use crate::sys::{self, Lifeline};
use crate::worker::process::WorkerProcess;

/// Everything needed to start one more worker process.
#[derive(Debug, Clone)]
pub(crate) struct Spawner {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    cwd: Option<PathBuf>,
    stdout: Stdio,
    stderr: Stdio,
    lifeline: &'static Lifeline,
}

/// The settings of the builder that shape a worker's command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpawnSettings {
    pub(crate) launch: Launch,
    pub(crate) env: Vec<(OsString, Option<OsString>)>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) stdout: Stdio,
    pub(crate) stderr: Stdio,
}

impl Spawner {
    pub(crate) fn new(settings: SpawnSettings) -> io::Result<Spawner> {
        let (program, args) = match settings.launch {
            Launch::CurrentExe => (std::env::current_exe()?, super::test_entry::worker_args()),
            Launch::Binary(path) => (path, Vec::new()),
        };
        Ok(Spawner {
            program,
            args,
            env: settings.env,
            cwd: settings.cwd,
            stdout: settings.stdout,
            stderr: settings.stderr,
            lifeline: Lifeline::get()?,
        })
    }

    /// The executable workers run, for error messages.
    pub(crate) fn program(&self) -> String {
        self.program.display().to_string()
    }

    /// Starts a worker that will connect to the bootstrap listener `server`.
    pub(crate) fn spawn(&self, server: &str) -> io::Result<WorkerProcess> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        for (key, value) in &self.env {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        cmd.env(ENV_SERVER, server)
            .env(ENV_LIFELINE, self.lifeline.child_fd().to_string())
            .stdin(StdStdio::null())
            .stdout(match self.stdout {
                Stdio::Inherit => StdStdio::inherit(),
                Stdio::Null => StdStdio::null(),
            })
            // Always piped: the parent keeps the tail for crash reports and forwards it.
            .stderr(StdStdio::piped());
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        sys::own_process_group(&mut cmd);
        self.lifeline.attach(&mut cmd);
        let child = cmd.spawn()?;
        Ok(WorkerProcess::new(child, self.stderr == Stdio::Inherit))
    }
}
