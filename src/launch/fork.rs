//! The pool's side of a fork server: starting it, asking it for workers, and learning
//! from it how they ended.
//!
//! A forked worker is the server's child, not ours, so the server reaps it; it kills the
//! worker's group first, then reports the wait status (`Ended`). A worker's handle here
//! ([`Forked`]) implements [`Reap`] on those reports. One thread per server reads its
//! messages; the same thread spawned the server, because `PR_SET_PDEATHSIG` fires when
//! the *thread* that spawned a child ends. If the server dies, its workers die with it
//! (they hold `PR_SET_PDEATHSIG` on the server) and a new server is started on the next
//! request.
//!
//! The pool's first workers need no server when the program is still single-threaded:
//! they are forked from the program itself, are its children and are reaped as such
//! ([`ForkedHere`]).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::exec::CommandSpec;
use crate::link::ParentEnd;
use crate::output::label::Writer;
use crate::output::reader::Pipe;
use crate::slot::process::{Pipes, Reap, WorkerProcess};
use crate::sys::{self, Signal};
use crate::wire::env;
use crate::wire::fork_server::{self as msg, FromServer, ToServer};
use crate::wire::frame;

/// How long a server that was let go has to kill its workers and exit.
const SERVER_GRACE: Duration = Duration::from_secs(2);
/// How long a failed server's start-up report waits for its stderr.
const TAIL_WAIT: Duration = Duration::from_millis(250);

/// Starts fork servers on demand and asks the current one for workers.
#[derive(Debug)]
pub(crate) struct ForkServer {
    command: CommandSpec,
    start_timeout: Duration,
    current: Mutex<Option<Arc<Server>>>,
    /// Workers forked from this process when the pool was built, until slots claim them.
    first: Mutex<VecDeque<(ParentEnd, Prestarted)>>,
}

impl ForkServer {
    pub(crate) fn new(command: CommandSpec, start_timeout: Duration) -> ForkServer {
        ForkServer {
            command,
            start_timeout,
            current: Mutex::new(None),
            first: Mutex::new(VecDeque::new()),
        }
    }

    /// Forks the pool's first `workers` workers from this very process, if it is still
    /// single-threaded (a pool built first thing in `main`) and small: no exec, no
    /// program start, and no server to wait for. They are this process's children and
    /// die with it (`PR_SET_PDEATHSIG`). Their links, with `setup` already written in,
    /// wait for the slots in [`take_prestarted`](ForkServer::take_prestarted).
    ///
    /// Otherwise, or if a fork fails, workers are started on request, and the first of
    /// those re-executes the program as the server. So does the first replacement of a
    /// first worker: a server is never forked from the program, which would hold (and,
    /// as the program writes to its memory, come to own) a copy of the program's memory
    /// for the pool's life.
    pub(crate) fn fork_first_workers(&self, workers: usize, setup: &[u8]) {
        // Only with a small `Setup` (a small context): a larger one would not go into
        // the socket whole, and the worker would inherit the rest in our send queue as
        // dead weight under its memory limit. Only from a small program: each worker
        // shares the program's memory as it was at the fork, and every page the program
        // writes to later is copied.
        if setup.len() > PRESTART_SETUP_BYTES
            || sys::resident_bytes(std::process::id()).is_none_or(|b| b > PRESTART_RESIDENT)
            || !matches!(sys::thread_count(), Ok(1))
        {
            return;
        }
        // Bytes still in the program's stdout buffers (Rust's and the C library's)
        // would be copied into each worker and written again when it exits.
        let _ = std::io::Write::flush(&mut std::io::stdout());
        sys::flush_c_stdio();
        let mut first = lock(&self.first);
        for _ in 0..workers {
            match fork_first_worker(&self.command, setup) {
                Ok(worker) => first.push_back(worker),
                Err(_) => break,
            }
        }
    }

    /// A worker forked when the pool was built, with its link, for a slot's first start;
    /// `None` if there is none left.
    pub(crate) fn take_prestarted(&self) -> Option<(ParentEnd, Prestarted)> {
        lock(&self.first).pop_front()
    }

    /// Asks for a worker on the link socket `socket`, starting a server first if there
    /// is none or the last one died.
    pub(crate) fn ask(&self, socket: OwnedFd) -> io::Result<Asked> {
        let server = {
            let mut current = lock(&self.current);
            match &*current {
                Some(server) if !server.events.is_gone() => server.clone(),
                _ => {
                    let server = Arc::new(Server::start(&self.command, self.start_timeout)?);
                    *current = Some(server.clone());
                    server
                }
            }
        };
        server.ask(socket, &self.command)
    }
}

impl Drop for ForkServer {
    /// First workers that no slot claimed (the pool ended before its slots started) are
    /// killed and reaped here: no zombie, no orphan.
    fn drop(&mut self) {
        for (link, started) in lock(&self.first).drain(..) {
            drop(link);
            let _ = sys::signal_group(started.pid, sys::KILL);
            // Fails only where the program let the kernel reap its children.
            let _ = sys::reap(started.pid);
        }
    }
}

/// The largest `Setup` frame with which the first workers are forked at the pool's
/// start: well under what a socket buffer takes at once.
const PRESTART_SETUP_BYTES: usize = 16 * 1024;
/// The largest resident size of a program that forks the first workers itself.
const PRESTART_RESIDENT: u64 = 64 << 20;

/// Forks one of the pool's first workers from this single-threaded process: its link
/// (with `setup` in it) and pipes are made first, and the child settles and serves.
fn fork_first_worker(command: &CommandSpec, setup: &[u8]) -> io::Result<(ParentEnd, Prestarted)> {
    let (mut link, socket) = ParentEnd::pair()?;
    // Sent before the worker exists, as for any start (see `Supervisor::start`).
    link.send(setup)?;
    let (stderr, stderr_writer) = io::pipe()?;
    let stdout = match command.stdout().pipes_stdout() {
        true => Some(io::pipe()?),
        false => None,
    };
    let (stdout, stdout_writer): (Option<Pipe>, Option<OwnedFd>) =
        stdout.map(|(r, w)| (r.into(), w.into())).unzip();
    let parent = std::process::id();
    // SAFETY: the caller checked that this process has one thread.
    let Some(pid) = (unsafe { sys::fork_single_threaded() })? else {
        // The worker. It never returns into the program it was forked from; what the
        // program owns is closed by the settling, not dropped.
        std::mem::forget((link, stderr, stdout));
        let stdout_null = !command.stdout().inherits_stdout();
        let settled = sys::settle_first_worker(
            parent,
            stderr_writer.into(),
            stdout_writer,
            stdout_null,
            socket,
        )
        .and_then(|socket| command.apply_env_and_cwd().map(|()| socket));
        let socket = match settled {
            Ok(socket) => socket,
            Err(e) => {
                eprintln!("procpool worker: cannot settle after the fork: {e}");
                sys::exit_now(crate::wire::exit_code::START);
            }
        };
        // No lifeline watchdog: the parent-death signal comes when this process, whose
        // only thread forked it, dies.
        crate::child::forked::enter_forked(socket, None)
    };
    sys::make_group_leader(pid);
    drop((socket, stderr_writer, stdout_writer));
    Ok((
        link,
        Prestarted {
            pid,
            stderr: stderr.into(),
            stdout,
        },
    ))
}

/// A worker forked from this process at the pool's start, claimed by a slot.
#[derive(Debug)]
pub(crate) struct Prestarted {
    pid: u32,
    stderr: Pipe,
    stdout: Option<Pipe>,
}

impl Prestarted {
    pub(crate) fn finish(self, command: &CommandSpec) -> WorkerProcess {
        let pipes = Pipes {
            stderr: Some(self.stderr),
            stdout: self.stdout,
            stderr_to: Some(command.stderr()),
            stdout_to: Some(command.stdout()),
            writer: Writer::Worker,
        };
        WorkerProcess::new(Box::new(ForkedHere(self.pid)), pipes)
    }
}

/// A worker asked of the fork server: its `Spawn` request number and pipes.
#[derive(Debug)]
pub(crate) struct Asked {
    server: Arc<Server>,
    ticket: u64,
    stderr: Pipe,
    stdout: Option<Pipe>,
}

impl Asked {
    /// The worker, once the server answers its request.
    pub(crate) fn finish(self, command: &CommandSpec) -> io::Result<WorkerProcess> {
        let ticket = self.ticket;
        let answer = self
            .server
            .wait_for("the fork server did not fork", |state| {
                state.answers.remove(&ticket)
            })?;
        let pid = answer.map_err(io::Error::other)?;
        let child = Forked {
            pid,
            server: self.server,
        };
        let pipes = Pipes {
            stderr: Some(self.stderr),
            stdout: self.stdout,
            stderr_to: Some(command.stderr()),
            stdout_to: Some(command.stdout()),
            writer: Writer::Worker,
        };
        Ok(WorkerProcess::new(Box::new(child), pipes))
    }
}

/// One running fork server.
#[derive(Debug)]
struct Server {
    program: String,
    sock: OwnedFd,
    events: Arc<Events>,
    /// The exec'd server process itself; our child.
    process: Mutex<WorkerProcess>,
    /// How many `Spawn` requests were sent. The server answers them in order, so the
    /// n-th answer belongs to the n-th request; several can be under way at once.
    spawns_sent: Mutex<u64>,
    reader: Option<JoinHandle<()>>,
    start_timeout: Duration,
}

impl Server {
    fn start(command: &CommandSpec, start_timeout: Duration) -> io::Result<Server> {
        let (ours, theirs) = sys::packet_pair()?;
        let mut cmd = command.command();
        cmd.env(env::FORK_SERVER, theirs.as_raw_fd().to_string());
        if command.stdout().pipes_stdout() {
            // Each worker gets a stdout pipe of its own; the server itself prints nothing.
            cmd.stdout(std::process::Stdio::null());
        }
        sys::inherit_fd(&mut cmd, theirs.as_raw_fd());
        let events = Arc::new(Events::default());
        let reader_sock = ours.try_clone()?;
        let reader_events = events.clone();
        let (started_tx, started_rx) = mpsc::channel();
        let reader = thread::Builder::new()
            .name("procpool-fork-server".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let spawned = super::exec::spawn_retrying_busy(&mut cmd);
                drop(theirs);
                let running = spawned.is_ok();
                let _ = started_tx.send(spawned);
                if running {
                    reader_events.read_from(&reader_sock);
                }
                reader_events.set_gone();
            })?;
        let child = started_rx
            .recv()
            .map_err(|_| io::Error::other("the fork-server thread died"))??;
        let server = Server {
            program: command.program(),
            sock: ours,
            events,
            process: Mutex::new(WorkerProcess::exec(
                child,
                Writer::ForkServer,
                command.stderr(),
                command.stdout(),
            )),
            spawns_sent: Mutex::new(0),
            reader: Some(reader),
            start_timeout,
        };
        // It writes only when something is wrong, but a full pipe would stop it.
        lock(&server.process).start_output();
        server.wait_ready()?;
        Ok(server)
    }

    fn pid(&self) -> u32 {
        lock(&self.process).pid()
    }

    fn wait_ready(&self) -> io::Result<()> {
        let late = format!("fork server {} was not ready", self.program);
        let pid = self.wait_for(&late, |state| state.ready)?;
        if pid != self.pid() {
            return Err(io::Error::other(format!(
                "process {pid} answered in place of fork server {}",
                self.pid()
            )));
        }
        Ok(())
    }

    /// Waits, up to `start_timeout`, until `take` finds what it waits for among the
    /// server's events. A server gone meanwhile is reported by `died`; a wait too long
    /// as "`late` within …".
    fn wait_for<T>(
        &self,
        late: &str,
        mut take: impl FnMut(&mut EventState) -> Option<T>,
    ) -> io::Result<T> {
        let deadline = Instant::now() + self.start_timeout;
        let mut state = self.events.lock();
        loop {
            if let Some(found) = take(&mut state) {
                return Ok(found);
            }
            if state.gone {
                let ready = state.ready.is_some();
                drop(state);
                return Err(self.died(ready));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::other(format!(
                    "{late} within {:?}",
                    self.start_timeout
                )));
            }
            state = self.events.wait(state, deadline - now);
        }
    }

    /// The error for a server that is gone: how it ended, whether it had said `Ready`,
    /// and its first stderr line.
    fn died(&self, ready: bool) -> io::Error {
        if let Some(theirs) = self.events.lock().other_protocol {
            let _ = lock(&self.process).kill();
            return io::Error::other(format!(
                "fork server {} speaks procpool protocol {theirs}, this pool speaks protocol {} \
                 (procpool {}): build it from the same procpool version",
                self.program,
                frame::PROTOCOL,
                frame::RELEASE
            ));
        }
        let mut process = lock(&self.process);
        let status = process.wait_or_kill(TAIL_WAIT);
        let said = process.first_stderr_line(TAIL_WAIT);
        io::Error::other(format!(
            "fork server {} ended ({}){}{}",
            self.program,
            status,
            if ready { "" } else { " before it was ready" },
            said.map(|l| format!("; its first stderr line: {l}"))
                .unwrap_or_default()
        ))
    }

    /// Sends a `Spawn` for a worker on `socket`; the answer comes in
    /// [`Asked::finish`].
    fn ask(self: &Arc<Server>, socket: OwnedFd, command: &CommandSpec) -> io::Result<Asked> {
        let (stderr, stderr_writer) = io::pipe()?;
        let stdout = match command.stdout().pipes_stdout() {
            true => Some(io::pipe()?),
            false => None,
        };
        let mut fds = vec![socket.as_raw_fd(), stderr_writer.as_raw_fd()];
        fds.extend(stdout.as_ref().map(|(_, writer)| writer.as_raw_fd()));
        let sent = {
            // Held across the send, so requests are numbered in the order they go out.
            let mut sent = lock(&self.spawns_sent);
            self.send(&ToServer::Spawn, &fds).map(|()| {
                *sent += 1;
                *sent - 1
            })
        };
        let ticket = match sent {
            Ok(ticket) => ticket,
            // A server that is gone says how it ended; anything else as it is.
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e),
            Err(_) => {
                let ready = self.events.lock().ready.is_some();
                return Err(self.died(ready));
            }
        };
        drop((socket, stderr_writer));
        Ok(Asked {
            server: self.clone(),
            ticket,
            stderr: stderr.into(),
            stdout: stdout.map(|(reader, _writer)| Pipe::from(reader)),
        })
    }

    fn send(&self, message: &ToServer, fds: &[std::os::fd::RawFd]) -> io::Result<()> {
        sys::send_packet(self.sock.as_fd(), &msg::encode(message), fds)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // End of stream tells the server to kill what is left of its workers and exit;
        // the reader thread sees end of stream too.
        let _ = sys::shutdown(self.sock.as_fd());
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        lock(&self.process).wait_or_kill(SERVER_GRACE);
    }
}

/// What the server has said, shared with the thread that reads it.
#[derive(Debug, Default)]
struct Events {
    state: Mutex<EventState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct EventState {
    ready: Option<u32>,
    /// Answers to `Spawn` requests by request number, until their requesters take them.
    answers: HashMap<u64, Result<u32, String>>,
    /// How many answers have come.
    answered: u64,
    /// Raw wait statuses of workers that ended and were reaped by the server, until the
    /// pool collects them.
    ended: HashMap<u32, i32>,
    /// The server closed its end or broke the protocol: it is dead or being killed.
    gone: bool,
    /// The protocol the server announced, when it is not this pool's.
    other_protocol: Option<u32>,
}

impl EventState {
    fn answer(&mut self, answer: Result<u32, String>) {
        self.answers.insert(self.answered, answer);
        self.answered += 1;
    }
}

impl Events {
    fn lock(&self) -> MutexGuard<'_, EventState> {
        lock(&self.state)
    }

    fn wait<'a>(
        &self,
        guard: MutexGuard<'a, EventState>,
        timeout: Duration,
    ) -> MutexGuard<'a, EventState> {
        self.changed
            .wait_timeout(guard, timeout)
            .unwrap_or_else(|e| e.into_inner())
            .0
    }

    fn is_gone(&self) -> bool {
        self.lock().gone
    }

    fn set_gone(&self) {
        self.lock().gone = true;
        self.changed.notify_all();
    }

    /// Reads the server's messages until it closes its end. A message that does not
    /// decode means the server cannot be trusted: it is let go (end of stream makes it
    /// kill its workers and exit), and the caller records it as gone.
    fn read_from(&self, sock: &OwnedFd) {
        let mut buf = vec![0u8; msg::MAX_PACKET];
        let mut fds = Vec::new();
        loop {
            // The server sends no descriptors; any that came are closed here.
            fds.clear();
            let len = match sys::recv_packet(sock.as_fd(), &mut buf, &mut fds) {
                Ok(Some(len)) => len,
                Ok(None) | Err(_) => return,
            };
            let message = msg::decode::<FromServer>(&buf[..len]);
            // A server of another procpool version: said once, then it is let go.
            let theirs = match &message {
                Ok(FromServer::Ready { protocol, .. }) => Some(*protocol),
                Ok(_) => None,
                Err(_) => msg::ready_protocol(&buf[..len]),
            };
            if let Some(theirs) = theirs.filter(|&p| p != frame::PROTOCOL) {
                self.lock().other_protocol = Some(theirs);
                let _ = sys::shutdown(sock.as_fd());
                return;
            }
            let Ok(message) = message else {
                let _ = sys::shutdown(sock.as_fd());
                return;
            };
            let mut state = self.lock();
            match message {
                FromServer::Ready { pid, .. } => state.ready = Some(pid),
                FromServer::Spawned { pid } => state.answer(Ok(pid)),
                FromServer::SpawnFailed { message } => state.answer(Err(message)),
                FromServer::Ended { pid, status } => {
                    state.ended.insert(pid, status);
                }
            }
            drop(state);
            self.changed.notify_all();
        }
    }
}

/// A worker forked from this process (one of the first): our child, without a
/// `std::process::Child`.
#[derive(Debug)]
struct ForkedHere(u32);

impl Reap for ForkedHere {
    fn pid(&self) -> u32 {
        self.0
    }

    fn has_exited(&mut self) -> bool {
        sys::has_exited(self.0)
    }

    fn signal_group(&mut self, signal: Signal) {
        let _ = sys::signal_group(self.0, signal);
    }

    fn reap(&mut self) -> ExitStatus {
        ExitStatus::from_raw(sys::reap(self.0).expect("reaping our own child cannot fail"))
    }
}

/// A worker forked by a fork server, as the pool sees it.
#[derive(Debug)]
struct Forked {
    pid: u32,
    server: Arc<Server>,
}

impl Reap for Forked {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn has_exited(&mut self) -> bool {
        let state = self.server.events.lock();
        state.gone || state.ended.contains_key(&self.pid)
    }

    fn signal_group(&mut self, signal: Signal) {
        // The server signals only workers it has not reaped, so the group id is safe.
        let request = ToServer::Signal {
            pid: self.pid,
            signal: signal as i32,
        };
        let _ = self.server.send(&request, &[]);
    }

    /// A worker whose server died was killed by `PR_SET_PDEATHSIG`; it is reported as
    /// killed by `SIGKILL`.
    fn reap(&mut self) -> ExitStatus {
        let mut state = self.server.events.lock();
        loop {
            if let Some(status) = state.ended.remove(&self.pid) {
                return ExitStatus::from_raw(status);
            }
            if state.gone {
                return ExitStatus::from_raw(Signal::SIGKILL as i32);
            }
            state = self.server.events.wait(state, Duration::from_secs(1));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
