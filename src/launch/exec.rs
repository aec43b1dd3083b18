//! The command line every launch mode shares: a worker or a fork server exec'd with
//! the pool's environment, working directory, streams and lifeline.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::Launch;
use crate::output::mode::OutputMode;
use crate::sys::{self, Lifeline};
use crate::wire::env;

/// The settings of the builder that shape a worker's command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpawnSettings {
    pub(crate) launch: Launch,
    pub(crate) env: Vec<(OsString, Option<OsString>)>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) stdout: OutputMode,
    pub(crate) stderr: OutputMode,
}

/// The program, arguments, environment and streams of an exec'd process: a worker, or
/// a fork server (whose forked workers inherit all of it but stderr).
#[derive(Debug, Clone)]
pub(crate) struct CommandSpec {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    cwd: Option<PathBuf>,
    stdout: OutputMode,
    stderr: OutputMode,
    lifeline: &'static Lifeline,
}

impl CommandSpec {
    /// The executable, for error messages.
    pub(crate) fn program(&self) -> String {
        self.program.display().to_string()
    }

    /// A command for `settings`, running `program` with `args`.
    pub(crate) fn new(
        settings: &SpawnSettings,
        program: PathBuf,
        args: Vec<OsString>,
    ) -> io::Result<CommandSpec> {
        Ok(CommandSpec {
            program,
            args,
            env: settings.env.clone(),
            cwd: settings.cwd.clone(),
            stdout: settings.stdout.clone(),
            stderr: settings.stderr.clone(),
            lifeline: Lifeline::get()?,
        })
    }

    pub(crate) fn stdout(&self) -> &OutputMode {
        &self.stdout
    }

    pub(crate) fn stderr(&self) -> &OutputMode {
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
        cmd.env(env::LIFELINE, self.lifeline.child_fd().to_string())
            .stdin(Stdio::null())
            .stdout(if self.stdout.pipes_stdout() {
                Stdio::piped()
            } else if self.stdout.inherits_stdout() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            // Always piped: the parent keeps the tail for crash reports and forwards it.
            .stderr(Stdio::piped());
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        sys::own_process_group(&mut cmd);
        self.lifeline.attach(&mut cmd);
        cmd
    }
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
