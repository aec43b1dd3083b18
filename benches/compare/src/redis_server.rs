//! A `redis-server` of one measurement: listening only on a unix socket in a fresh
//! directory of its own, with no persistence, stopped by its pid (SIGTERM, a short
//! grace, SIGKILL) and its directory removed on drop. It dies with the measurement's
//! process if that is killed first (`PR_SET_PDEATHSIG`), so a timed-out row leaves
//! nothing behind.

use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long the server may take to answer its first PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Pause between two probes.
const POLL: Duration = Duration::from_millis(5);

/// A running `redis-server` and its directory.
#[derive(Debug)]
pub(crate) struct RedisServer {
    child: Option<Child>,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server in a new directory under the temporary directory and waits until
    /// it answers.
    ///
    /// # Errors
    /// No `redis-server` on `PATH`, the directory not made, or no answer within 10 s.
    pub(crate) fn start() -> Result<RedisServer> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("ppc-{}-{nanos:x}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("making {}", dir.display()))?;
        let mut server = RedisServer { child: None, dir };
        let socket = server.socket();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(&server.dir)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--logfile")
            .arg(server.dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .context("starting redis-server (is it installed? apt-get install redis-server)")?;
        server.child = Some(child);
        server.wait_ready()?;
        Ok(server)
    }

    /// The URL of the server's socket, for `Run::builder` and `Agent::builder`.
    pub(crate) fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// The server's pid, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's directory, for a measurement's own files.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's `INFO commandstats`: one `cmdstat_<name>:calls=…,usec=…` line per
    /// command called so far, to see where a row's time goes.
    ///
    /// # Errors
    /// The server did not answer, or not with a bulk string.
    pub(crate) fn command_stats(&self) -> Result<String> {
        let mut stream = UnixStream::connect(self.socket())?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"INFO commandstats\r\n")?;
        let mut reply = Vec::new();
        let mut chunk = [0u8; 4096];
        // A bulk string: `$<length>\r\n<text>\r\n`.
        loop {
            let read = stream.read(&mut chunk)?;
            if read == 0 {
                bail!("the server closed the connection");
            }
            reply.extend_from_slice(&chunk[..read]);
            let text = String::from_utf8_lossy(&reply);
            let Some((head, body)) = text.split_once("\r\n") else {
                continue;
            };
            let length: usize = head
                .strip_prefix('$')
                .context("not a bulk string")?
                .parse()?;
            if body.len() >= length {
                return Ok(body[..length].to_owned());
            }
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!("redis-server exited at start: {status}");
                }
            }
            if ping(&self.socket()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("redis-server did not answer within {READY_TIMEOUT:?}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGTERM, up to two seconds' grace, SIGKILL; reaped either way.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the server on `socket` answers PING.
fn ping(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// Makes the child get SIGKILL when this process ends, so that a measurement killed by
/// run.sh's timeout leaves no server or agent running.
pub(crate) fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs between fork and exec; it only calls prctl, which is
    // async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}
