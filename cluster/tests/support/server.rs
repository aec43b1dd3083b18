//! A real `redis-server` per test, in a temporary directory of its own.
//!
//! [`RedisServer::start`] spawns the server listening on a unix socket in a fresh
//! directory (TCP on a random loopback port only when asked), waits until it answers,
//! and [`RedisServer::url`] gives the URL for `redis::Client::open`. The server is
//! always stopped by its pid: SIGTERM then SIGKILL in [`RedisServer::stop`], SIGKILL in
//! [`RedisServer::kill9`] and on drop, which also removes the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a start may take before it counts as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`RedisServer::stop`] waits after SIGTERM before sending SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Pause between two readiness probes or two exit checks.
const POLL: Duration = Duration::from_millis(10);
/// Lines of `redis.log` quoted in a failed start's error.
const LOG_TAIL_LINES: usize = 20;
/// Longest socket path accepted: `sun_path` holds 108 bytes on Linux, NUL included.
const MAX_SOCKET_PATH: usize = 100;

/// Directories made by this process so far, part of each directory's unique name.
static DIRS_MADE: AtomicUsize = AtomicUsize::new(0);

/// What a server is started with, kept so that a restart uses the same.
#[derive(Debug, Clone, Default)]
pub(crate) struct RedisServerBuilder {
    /// `--appendonly yes --appendfsync always` instead of no persistence at all.
    appendonly: bool,
    /// `--requirepass`, and the password in [`RedisServer::url`].
    password: Option<String>,
    /// Also listen on a random TCP port of 127.0.0.1, and hand out a `redis://` URL.
    port: bool,
    /// Listen with TLS on that port instead (a CA and a server certificate for
    /// 127.0.0.1 made with `openssl` in the directory), and hand out `rediss://`.
    tls: bool,
}

impl RedisServerBuilder {
    /// Turns the append-only file on, fsynced at every write, so that data survives
    /// [`RedisServer::kill9`] and comes back with [`RedisServer::restart`].
    pub(crate) fn appendonly(mut self, on: bool) -> Self {
        self.appendonly = on;
        self
    }

    /// Requires this password (`--requirepass`); [`RedisServer::url`] carries it.
    pub(crate) fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Also listens on a free TCP port of 127.0.0.1; [`RedisServer::url`] then gives
    /// `redis://127.0.0.1:PORT` instead of the unix socket.
    pub(crate) fn port(mut self, on: bool) -> Self {
        self.port = on;
        self
    }

    /// Listens with TLS only on a free TCP port of 127.0.0.1 (the unix socket stays
    /// plain), with certificates made for the test by `openssl`;
    /// [`RedisServer::url`] gives `rediss://127.0.0.1:PORT` and
    /// [`RedisServer::ca_cert`] the root to trust.
    pub(crate) fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self.port = self.port || on;
        self
    }

    /// Starts the server in a fresh temporary directory and waits until it answers.
    ///
    /// # Errors
    ///
    /// When `redis-server` is not on `PATH` (the message says how to install it), when
    /// the directory or port cannot be had, and when the server exits or does not
    /// answer within 10 s (the message quotes the end of `redis.log`).
    pub(crate) fn start(self) -> anyhow::Result<RedisServer> {
        let dir = make_dir()?;
        // Owned from here on, so that a failed start still removes the directory.
        let mut server = RedisServer {
            child: None,
            dir,
            port: None,
            options: self,
        };
        let socket = server.socket();
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "socket path {} is too long for a unix socket; set TMPDIR to a shorter directory",
                socket.display()
            );
        }
        if server.options.port {
            server.port = Some(free_port()?);
        }
        if server.options.tls {
            make_certificates(&server.dir)?;
        }
        server.spawn()?;
        Ok(server)
    }
}

/// A `redis-server` process of this test, with its directory; stopped and removed on
/// drop.
#[derive(Debug)]
pub(crate) struct RedisServer {
    /// The running server; `None` once it has been stopped and reaped, so that no
    /// signal ever goes to a pid the kernel may have handed to another process.
    child: Option<Child>,
    /// The temporary directory: socket, log, append-only files.
    dir: PathBuf,
    /// The TCP port, in port mode.
    port: Option<u16>,
    /// What the server was started with.
    options: RedisServerBuilder,
}

impl RedisServer {
    /// Starts a server with the defaults: unix socket only, no password, no
    /// persistence.
    ///
    /// # Errors
    ///
    /// As [`RedisServerBuilder::start`].
    pub(crate) fn start() -> anyhow::Result<Self> {
        Self::builder().start()
    }

    /// Options for a server: append-only file, password, TCP port.
    pub(crate) fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// The URL that `redis::Client::open` takes: `redis+unix:///DIR/redis.sock`
    /// (`?pass=...` with a password), or `redis://127.0.0.1:PORT` (`:password@`) in
    /// port mode.
    pub(crate) fn url(&self) -> String {
        let password = self.options.password.as_deref().map(percent_encode);
        match (self.port, password) {
            (Some(port), password) => {
                let scheme = if self.options.tls { "rediss" } else { "redis" };
                match password {
                    Some(password) => format!("{scheme}://:{password}@127.0.0.1:{port}"),
                    None => format!("{scheme}://127.0.0.1:{port}"),
                }
            }
            (None, password) => {
                // The path is made by us but may come from TMPDIR: encode all but '/'.
                let path: String = self
                    .socket()
                    .to_string_lossy()
                    .split('/')
                    .map(percent_encode)
                    .collect::<Vec<_>>()
                    .join("/");
                match password {
                    Some(password) => format!("redis+unix://{path}?pass={password}"),
                    None => format!("redis+unix://{path}"),
                }
            }
        }
    }

    /// The test CA's certificate (PEM) that a TLS server's certificate chains to.
    ///
    /// # Errors
    /// When the server was not started with TLS.
    pub(crate) fn ca_cert(&self) -> anyhow::Result<Vec<u8>> {
        fs::read(self.dir.join("ca.crt")).context("reading the test CA (was TLS asked for?)")
    }

    /// The pid of the running server, `None` once stopped or killed.
    pub(crate) fn pid(&self) -> Option<Pid> {
        self.child.as_ref().and_then(|child| pid_of(child).ok())
    }

    /// The server's temporary directory (socket, `redis.log`, append-only files).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server: SIGTERM, up to 5 s to exit, then SIGKILL; reaps it. Does
    /// nothing when it is already stopped.
    ///
    /// # Errors
    ///
    /// When a signal cannot be sent or the process cannot be waited for.
    pub(crate) fn stop(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let pid = pid_of(child)?;
        kill(pid, Signal::SIGTERM).with_context(|| format!("SIGTERM to redis-server {pid}"))?;
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if child
                .try_wait()
                .context("waiting for redis-server")?
                .is_some()
            {
                self.child = None;
                return Ok(());
            }
            thread::sleep(POLL);
        }
        self.kill9()
    }

    /// Kills the server with SIGKILL and reaps it: a crash, with no chance to save or
    /// clean up. Does nothing when it is already stopped.
    ///
    /// # Errors
    ///
    /// When the signal cannot be sent or the process cannot be waited for.
    pub(crate) fn kill9(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = pid_of(&child)?;
        // The child is not reaped yet, so the pid is still ours even if it has exited.
        kill(pid, Signal::SIGKILL).with_context(|| format!("SIGKILL to redis-server {pid}"))?;
        child.wait().context("reaping redis-server")?;
        Ok(())
    }

    /// Starts the server again on the same directory, socket, port and options, after
    /// [`stop`](Self::stop) or [`kill9`](Self::kill9) (stopping it first if it still
    /// runs). With the append-only file on, the data written before comes back.
    ///
    /// # Errors
    ///
    /// As [`stop`](Self::stop) and [`RedisServerBuilder::start`].
    pub(crate) fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// The unix socket's path, there in every mode.
    fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// The log file; the server's stdout and stderr go there too, so that errors it
    /// prints before opening its log are not lost.
    fn log(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Spawns `redis-server` with this server's options and waits until it answers.
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .with_context(|| format!("opening {}", self.log().display()))?;
        let mut command = Command::new("redis-server");
        let (plain, tls) = match (self.port, self.options.tls) {
            (Some(port), true) => (0, Some(port)),
            (port, _) => (port.unwrap_or(0), None),
        };
        command.arg("--port").arg(plain.to_string());
        if let Some(port) = tls {
            command
                .arg("--tls-port")
                .arg(port.to_string())
                .arg("--tls-cert-file")
                .arg(self.dir.join("server.crt"))
                .arg("--tls-key-file")
                .arg(self.dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(self.dir.join("ca.crt"))
                .args(["--tls-auth-clients", "no"]);
        }
        command
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--protected-mode")
            .arg("yes")
            .arg("--unixsocket")
            .arg(self.socket())
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--save")
            .arg("")
            .arg("--daemonize")
            .arg("no")
            .arg("--logfile")
            .arg(self.log());
        if self.options.appendonly {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        if let Some(password) = &self.options.password {
            command.arg("--requirepass").arg(password);
        }
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log file")?)
            .stderr(log);
        let child = command.spawn().map_err(|error| {
            if error.kind() == ErrorKind::NotFound {
                anyhow!(
                    "redis-server is not on PATH: the cluster tests need a real Redis; \
                     install it (`apt-get install redis-server`)"
                )
            } else {
                anyhow!(error).context("spawning redis-server")
            }
        })?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Probes the socket until the server answers PING, it exits, or 10 s pass.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("waiting for redis-server")? {
                    self.child = None;
                    bail!(
                        "redis-server exited during start ({status}); end of {}:\n{}",
                        self.log().display(),
                        log_tail(&self.log())
                    );
                }
            }
            if self.answers_ping() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "redis-server did not answer PING within {READY_TIMEOUT:?}; end of {}:\n{}",
                    self.log().display(),
                    log_tail(&self.log())
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Whether the server answers an inline PING with `+PONG`, or with `-NOAUTH` when
    /// a password is required (it is serving commands either way).
    fn answers_ping(&self) -> bool {
        let probe = || -> std::io::Result<Vec<u8>> {
            let mut stream = UnixStream::connect(self.socket())?;
            stream.set_read_timeout(Some(Duration::from_secs(1)))?;
            stream.set_write_timeout(Some(Duration::from_secs(1)))?;
            stream.write_all(b"PING\r\n")?;
            let mut reply = Vec::new();
            let mut buf = [0; 64];
            while !reply.ends_with(b"\r\n") {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                reply.extend_from_slice(&buf[..n]);
            }
            Ok(reply)
        };
        match probe() {
            Ok(reply) => reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH"),
            Err(_) => false,
        }
    }
}

impl Drop for RedisServer {
    /// Kills the server (SIGKILL by pid, reaped) and removes its directory.
    fn drop(&mut self) {
        if let Err(error) = self.kill9() {
            eprintln!(
                "redis-server in {} not stopped: {error:#}",
                self.dir.display()
            );
        }
        if let Err(error) = fs::remove_dir_all(&self.dir) {
            eprintln!("{} not removed: {error}", self.dir.display());
        }
    }
}

/// The pid of a spawned child, as nix wants it.
fn pid_of(child: &Child) -> anyhow::Result<Pid> {
    let raw = i32::try_from(child.id()).context("redis-server pid out of range")?;
    Ok(Pid::from_raw(raw))
}

/// Makes a new directory only this process can enter, named after the pid, a counter
/// and the clock so that parallel tests and test binaries never share one.
fn make_dir() -> anyhow::Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    let name = format!(
        "procpool-redis-{}-{}-{nanos}",
        std::process::id(),
        DIRS_MADE.fetch_add(1, Ordering::Relaxed)
    );
    let dir = std::env::temp_dir().join(name);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A TCP port of 127.0.0.1 that was free a moment ago: the kernel picks it for a
/// listener that is closed right away, so the server can take it.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener
        .local_addr()
        .context("reading the free port")?
        .port())
}

/// The last lines of a log file, or why it could not be read.
fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Err(error) = File::open(path).and_then(|mut file| file.read_to_string(&mut text)) {
        return format!("(cannot read it: {error})");
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Percent-encodes everything but RFC 3986's unreserved characters, which both
/// the userinfo and the query of a URL decode back.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Makes a test CA and a certificate for 127.0.0.1 signed by it, in `dir`, with the
/// `openssl` command (P-256 keys: quick to make).
fn make_certificates(dir: &Path) -> anyhow::Result<()> {
    let ext = dir.join("server.ext");
    fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
         extendedKeyUsage=serverAuth\n",
    )?;
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=procpool test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    ];
    for args in steps {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|error| match error.kind() {
                ErrorKind::NotFound => anyhow!(
                    "openssl is not on PATH: the TLS test makes its certificates with it; \
                     install it (`apt-get install openssl`)"
                ),
                _ => anyhow!(error).context("running openssl"),
            })?;
        if !output.status.success() {
            bail!(
                "openssl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    Ok(())
}
