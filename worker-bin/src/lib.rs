//! Demo and test tasks carried by the standalone `procpool-worker` binary.
//!
//! [`CountPrimes`] is honest CPU work; [`Fault`] misbehaves on request in every way a
//! worker can (panic, segfault, abort, exit, stack overflow, endless loops, allocation
//! bombs, floods of output), which the demo and the fault-matrix tests use.
//! [`functions`] holds tasks written as functions with `#[procpool::task]`.

use std::io::Write;
use std::time::Duration;

use procpool::{BoxError, FrozenSlice, SharedSlice, Task};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub mod functions;

/// Call from a binary's `main` so the linker keeps these tasks' registrations.
pub fn link() {}

/// Counts the primes in `start..end` by trial division: deliberately plain CPU work.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountPrimes {
    /// First number checked.
    pub start: u64,
    /// One past the last number checked.
    pub end: u64,
}

/// The kernel [`CountPrimes`] runs, public so benchmarks can run it in-process.
pub fn count_primes(start: u64, end: u64) -> u64 {
    (start..end).filter(|&n| is_prime(n)).count() as u64
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

impl Task for CountPrimes {
    const NAME: &'static str = "procpool_worker::CountPrimes";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        Ok(count_primes(self.start, self.end))
    }
}

/// `n * n`: the smallest useful task.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Square(pub u64);

impl Task for Square {
    const NAME: &'static str = "procpool_worker::Square";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        Ok(self.0.wrapping_mul(self.0))
    }
}

/// Misbehaves on request. Every variant but `Ok`, `Sleep` and `Now` ends badly on
/// purpose.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Fault {
    /// Returns the value: no fault.
    Ok(u64),
    /// Sleeps, then returns the number of milliseconds slept.
    Sleep(u64),
    /// Returns the wall-clock time it finished at, in microseconds since the Unix
    /// epoch: a quick task whose finish a test compares with when the parent saw
    /// something happen (the parent and its workers share the clock).
    Now,
    /// Panics with this message.
    Panic(String),
    /// Returns an error with a two-level cause chain.
    Fail,
    /// Writes through a null pointer (SIGSEGV).
    Segfault,
    /// Calls `std::process::abort` (SIGABRT).
    Abort,
    /// Calls `std::process::exit` with this code mid-task.
    Exit(i32),
    /// Recurses until the stack runs out.
    StackOverflow,
    /// Spins forever.
    Hang,
    /// Ignores SIGTERM, then spins forever.
    HangIgnoringTerm,
    /// Allocates and touches memory in 16 MiB steps, up to this many MiB.
    AllocBomb(u64),
    /// Writes this many bytes to stdout, then returns the count.
    PrintStdout(u64),
    /// Writes this many bytes to stderr, then returns the count.
    PrintStderr(u64),
    /// Starts `sleep` for this many seconds in the background, in the worker's process
    /// group, and returns its pid without waiting for it.
    SpawnSleep(u64),
}

impl Task for Fault {
    const NAME: &'static str = "procpool_worker::Fault";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        match self {
            Fault::Ok(v) => Ok(v),
            Fault::Sleep(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                Ok(ms)
            }
            Fault::Now => Ok(micros_since_epoch(std::time::SystemTime::now())),
            Fault::Panic(message) => panic!("{message}"),
            Fault::Fail => {
                let cause = std::io::Error::new(std::io::ErrorKind::NotFound, "input.bin missing");
                Err(Box::new(Wrapped {
                    what: "could not parse the input",
                    source: cause,
                }))
            }
            Fault::Segfault => {
                let null = std::hint::black_box(std::ptr::null_mut::<u64>());
                // SAFETY: none; this is the fault the variant exists to produce. A
                // volatile write through null cannot be optimised away and faults.
                unsafe { null.write_volatile(1) };
                Ok(0)
            }
            Fault::Abort => std::process::abort(),
            Fault::Exit(code) => std::process::exit(code),
            Fault::StackOverflow => Ok(recurse(0)),
            Fault::Hang => spin(),
            Fault::HangIgnoringTerm => {
                // SAFETY: SIG_IGN installs no handler code, so no handler can run
                // anything unsafe.
                unsafe {
                    nix::sys::signal::signal(
                        nix::sys::signal::Signal::SIGTERM,
                        nix::sys::signal::SigHandler::SigIgn,
                    )?;
                }
                spin()
            }
            Fault::AllocBomb(max_mib) => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                for _ in 0..max_mib / 16 {
                    hoard.push(vec![1u8; 16 << 20]);
                }
                Ok(std::hint::black_box(hoard).len() as u64)
            }
            Fault::PrintStdout(n) => write_bytes(std::io::stdout().lock(), n),
            Fault::PrintStderr(n) => write_bytes(std::io::stderr().lock(), n),
            Fault::SpawnSleep(secs) => {
                let child = std::process::Command::new("sleep")
                    .arg(secs.to_string())
                    .spawn()?;
                Ok(u64::from(child.id()))
            }
        }
    }
}

/// `at` in microseconds since the Unix epoch (0 before it), as [`Fault::Now`] returns it.
pub fn micros_since_epoch(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
    })
}

fn spin() -> ! {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn recurse(depth: u64) -> u64 {
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    let frame = std::hint::black_box([depth; 128]);
    recurse(depth + 1).wrapping_add(frame[7])
}

fn write_bytes(mut out: impl Write, n: u64) -> Result<u64, BoxError> {
    let line = [b'x'; 99];
    let mut left = n;
    while left > 0 {
        let chunk = left.min(100);
        out.write_all(&line[..(chunk - 1) as usize])?;
        out.write_all(b"\n")?;
        left -= chunk;
    }
    out.flush()?;
    Ok(n)
}

/// An error with a cause: a message and the I/O error under it.
#[derive(Debug)]
pub struct Wrapped {
    what: &'static str,
    source: std::io::Error,
}

impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.what)
    }
}

impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Returns its bytes reversed: for large payloads both ways.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reverse(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl Task for Reverse {
    const NAME: &'static str = "procpool_worker::Reverse";
    type Output = serde_bytes::ByteBuf;
    fn run(mut self) -> Result<serde_bytes::ByteBuf, BoxError> {
        self.0.reverse();
        Ok(serde_bytes::ByteBuf::from(self.0))
    }
}

/// Returns the worker's process id (tests use it to look for leftover processes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerPid;

impl Task for WorkerPid {
    const NAME: &'static str = "procpool_worker::WorkerPid";
    type Output = u32;
    fn run(self) -> Result<u32, BoxError> {
        Ok(std::process::id())
    }
}

/// Sleeps this many milliseconds, then returns the worker's process id: tasks that
/// overlap in time, so that each lands on a worker of its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PidAfter(pub u64);

impl Task for PidAfter {
    const NAME: &'static str = "procpool_worker::PidAfter";
    type Output = u32;
    fn run(self) -> Result<u32, BoxError> {
        std::thread::sleep(Duration::from_millis(self.0));
        Ok(std::process::id())
    }
}

/// Returns the worker's parent pid: the pool's process, or the fork server's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParentPid;

impl Task for ParentPid {
    const NAME: &'static str = "procpool_worker::ParentPid";
    type Output = u32;
    fn run(self) -> Result<u32, BoxError> {
        Ok(std::os::unix::process::parent_id())
    }
}

/// Sums the pool's context, read as `Vec<u64>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SumContext;

impl Task for SumContext {
    const NAME: &'static str = "procpool_worker::SumContext";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        Ok(procpool::context::<Vec<u64>>()?.iter().sum())
    }
}

/// Reads an environment variable and the working directory inside the worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerEnv(pub String);

impl Task for WorkerEnv {
    const NAME: &'static str = "procpool_worker::WorkerEnv";
    type Output = (Option<String>, String);
    fn run(self) -> Result<(Option<String>, String), BoxError> {
        Ok((
            std::env::var(&self.0).ok(),
            std::env::current_dir()?.display().to_string(),
        ))
    }
}

/// A task that the worker cannot decode: its `Deserialize` always fails.
#[derive(Debug, Clone)]
pub struct Undecodable;

impl Serialize for Undecodable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(0)
    }
}

impl<'de> Deserialize<'de> for Undecodable {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("Undecodable never decodes"))
    }
}

impl Task for Undecodable {
    const NAME: &'static str = "procpool_worker::Undecodable";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        Ok(0)
    }
}

/// A task that fails with an error whose `Display` panics.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PanickyError;

/// The error of [`PanickyError`].
#[derive(Debug)]
struct Unprintable;

impl std::fmt::Display for Unprintable {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("Unprintable refuses to be printed")
    }
}

impl Drop for Unprintable {
    /// Panics even while a panic unwinds: dropped then, it would abort the process.
    fn drop(&mut self) {
        panic!("Unprintable refuses to be dropped");
    }
}

/// A task that panics with a payload whose own `Drop` panics (`panic_any`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PanicsWithBadPayload;

/// The payload of [`PanicsWithBadPayload`].
struct BadPayload;

impl Drop for BadPayload {
    fn drop(&mut self) {
        panic!("BadPayload refuses to be dropped");
    }
}

impl Task for PanicsWithBadPayload {
    const NAME: &'static str = "procpool_worker::PanicsWithBadPayload";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        std::panic::panic_any(BadPayload)
    }
}

impl std::error::Error for Unprintable {}

impl Task for PanickyError {
    const NAME: &'static str = "procpool_worker::PanickyError";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        Err(Box::new(Unprintable))
    }
}

/// A task whose `Deserialize` panics in the worker.
#[derive(Debug, Clone)]
pub struct PanicsOnDecode;

impl Serialize for PanicsOnDecode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(0)
    }
}

impl<'de> Deserialize<'de> for PanicsOnDecode {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("PanicsOnDecode refuses to decode")
    }
}

impl Task for PanicsOnDecode {
    const NAME: &'static str = "procpool_worker::PanicsOnDecode";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        Ok(0)
    }
}

/// An output whose encoding panics, one the parent cannot decode, or one whose `Drop`
/// panics in the worker.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum BadOutput {
    /// The output's `Serialize` panics in the worker.
    PanicOnEncode,
    /// The output encodes, but its `Deserialize` fails in the parent.
    FailOnDecode,
    /// The output encodes, then its `Drop` panics in the worker.
    PanicOnDrop,
    /// The output's `Serialize` panics, and so does its `Drop`, even while that first
    /// panic unwinds (where it would abort the process).
    PanicOnEncodeAndDrop,
}

/// The output of [`BadOutput`].
#[derive(Debug)]
pub struct Troublesome(BadOutput);

impl Serialize for Troublesome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            BadOutput::PanicOnEncode | BadOutput::PanicOnEncodeAndDrop => {
                panic!("Troublesome refuses to encode")
            }
            BadOutput::FailOnDecode | BadOutput::PanicOnDrop => s.serialize_u8(1),
        }
    }
}

impl<'de> Deserialize<'de> for Troublesome {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("Troublesome never decodes"))
    }
}

impl Drop for Troublesome {
    fn drop(&mut self) {
        let panics = match self.0 {
            BadOutput::PanicOnDrop => !std::thread::panicking(),
            BadOutput::PanicOnEncodeAndDrop => true,
            _ => false,
        };
        if panics {
            panic!("Troublesome refuses to be dropped");
        }
    }
}

impl Task for BadOutput {
    const NAME: &'static str = "procpool_worker::BadOutput";
    type Output = Troublesome;
    fn run(self) -> Result<Troublesome, BoxError> {
        Ok(Troublesome(self))
    }
}

/// Aborts the first time it runs for a given marker path, succeeds after: a crash that a
/// retry on a fresh worker cures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrashOnce(pub std::path::PathBuf);

impl Task for CrashOnce {
    const NAME: &'static str = "procpool_worker::CrashOnce";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        if std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.0)
            .is_ok()
        {
            std::process::abort();
        }
        Ok(1)
    }
}

/// Creates the file at the path and returns 1: a side effect a test can look for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Touch(pub std::path::PathBuf);

impl Task for Touch {
    const NAME: &'static str = "procpool_worker::Touch";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        std::fs::write(&self.0, b"ran")?;
        Ok(1)
    }
}

/// Appends a line `n pid` to the file `log`, then segfaults if `crash`, else returns
/// `n`, the worker's pid and `pad` bytes: a task whose runs can be counted afterwards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tally {
    /// The file each run appends its line to.
    pub log: std::path::PathBuf,
    /// The task's number.
    pub n: u64,
    /// Bytes of padding in the output.
    pub pad: usize,
    /// Whether it segfaults after writing its line.
    pub crash: bool,
    /// Milliseconds it sleeps after writing its line.
    pub sleep_ms: u64,
}

impl Task for Tally {
    const NAME: &'static str = "procpool_worker::Tally";
    type Output = (u64, u32, serde_bytes::ByteBuf);
    fn run(self) -> Result<Self::Output, BoxError> {
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.log)?;
        log.write_all(format!("{} {}\n", self.n, std::process::id()).as_bytes())?;
        if self.crash {
            Fault::Segfault.run()?;
        }
        std::thread::sleep(std::time::Duration::from_millis(self.sleep_ms));
        Ok((
            self.n,
            std::process::id(),
            serde_bytes::ByteBuf::from(vec![7u8; self.pad]),
        ))
    }
}

/// How many times each `n` appears in a [`Tally`] log, and the pid each last ran in.
pub fn read_tally(log: &std::path::Path) -> std::collections::HashMap<u64, (usize, u32)> {
    let mut runs = std::collections::HashMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let mut words = line.split(' ').map(|w| w.parse::<u64>().expect("a number"));
        let (n, pid) = (words.next().expect("n"), words.next().expect("pid"));
        let entry = runs.entry(n).or_insert((0, 0));
        *entry = (entry.0 + 1, pid as u32);
    }
    runs
}

/// Doubles every element of a shared array in place and hands the same array back.
#[derive(Debug, Serialize, Deserialize)]
pub struct DoubleShared(pub SharedSlice<f64>);

impl Task for DoubleShared {
    const NAME: &'static str = "procpool_worker::DoubleShared";
    type Output = SharedSlice<f64>;
    fn run(self) -> Result<SharedSlice<f64>, BoxError> {
        let mut data = self.0;
        data.iter_mut().for_each(|x| *x *= 2.0);
        Ok(data)
    }
}

/// A new shared array made in the worker: `0..n`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MakeShared(pub u64);

impl Task for MakeShared {
    const NAME: &'static str = "procpool_worker::MakeShared";
    type Output = SharedSlice<u64>;
    fn run(self) -> Result<SharedSlice<u64>, BoxError> {
        let mut data = SharedSlice::zeroed(usize::try_from(self.0)?)?;
        for (i, x) in data.iter_mut().enumerate() {
            *x = i as u64;
        }
        Ok(data)
    }
}

/// The sum of each of several shared arrays.
#[derive(Debug, Serialize, Deserialize)]
pub struct SumShared(pub Vec<SharedSlice<u32>>);

impl Task for SumShared {
    const NAME: &'static str = "procpool_worker::SumShared";
    type Output = Vec<u64>;
    fn run(self) -> Result<Vec<u64>, BoxError> {
        Ok(self
            .0
            .iter()
            .map(|a| a.iter().map(|&x| u64::from(x)).sum())
            .collect())
    }
}

/// The sum of `from..to` of each of several read-only shared arrays, or, with `abort`,
/// the end of its worker: the task of a map whose tasks share their arrays.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SumRanges {
    /// The arrays, each with at least `to` elements.
    pub arrays: Vec<FrozenSlice<u64>>,
    /// The first element summed.
    pub from: usize,
    /// One past the last element summed.
    pub to: usize,
    /// Abort the worker instead.
    pub abort: bool,
}

impl Task for SumRanges {
    const NAME: &'static str = "procpool_worker::SumRanges";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        if self.abort {
            std::process::abort();
        }
        Ok(self
            .arrays
            .iter()
            .map(|a| a[self.from..self.to].iter().sum::<u64>())
            .sum())
    }
}

/// The sum of its numbers, which travel by value: [`SumRanges`] without shared memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SumValues(pub Vec<u64>);

impl Task for SumValues {
    const NAME: &'static str = "procpool_worker::SumValues";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        Ok(self.0.iter().sum())
    }
}

/// The worker's pid and how many descriptors it has open.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenFds;

impl Task for OpenFds {
    const NAME: &'static str = "procpool_worker::OpenFds";
    type Output = (u32, usize);
    fn run(self) -> Result<(u32, usize), BoxError> {
        Ok((
            std::process::id(),
            std::fs::read_dir("/proc/self/fd")?.count(),
        ))
    }
}

/// Finding the first byte of its shared array 0, sets it to 1 and segfaults; otherwise
/// returns it. Shows that a retried task sees what the lost attempt wrote.
#[derive(Debug, Serialize, Deserialize)]
pub struct MarkThenCrash(pub SharedSlice<u8>);

impl Task for MarkThenCrash {
    const NAME: &'static str = "procpool_worker::MarkThenCrash";
    type Output = u8;
    fn run(self) -> Result<u8, BoxError> {
        let mut data = self.0;
        if data[0] == 0 {
            data[0] = 1;
            Fault::Segfault.run()?;
        }
        Ok(data[0])
    }
}

/// Arranges for the file `path` to be created when the worker process exits normally
/// (a C `atexit` handler: it does not run if the process is killed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MarkCleanExit(pub String);

static CLEAN_EXIT_MARK: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

extern "C" fn mark_clean_exit() {
    if let Some(path) = CLEAN_EXIT_MARK.get() {
        // SAFETY: `path` is a valid C string, alive for the call (a `static`'s); open
        // is safe at exit.
        let fd = unsafe {
            nix::libc::open(
                path.as_ptr(),
                nix::libc::O_CREAT | nix::libc::O_WRONLY,
                0o644,
            )
        };
        if fd >= 0 {
            // SAFETY: `fd` was just opened above and is owned by nothing else; close is
            // safe at exit.
            unsafe { nix::libc::close(fd) };
        }
    }
}

impl Task for MarkCleanExit {
    const NAME: &'static str = "procpool_worker::MarkCleanExit";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        CLEAN_EXIT_MARK
            .set(std::ffi::CString::new(self.0)?)
            .map_err(|_| "already armed")?;
        // SAFETY: registers a plain `extern "C"` function with no arguments.
        let rc = unsafe { nix::libc::atexit(mark_clean_exit) };
        if rc != 0 {
            return Err("atexit failed".into());
        }
        Ok(u64::from(std::process::id()))
    }
}

/// Writes its text to the C library's buffered stdout (`printf`, no newline, no
/// flush): it reaches the pool only if the worker flushes C stdio before it ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CStdioPrint(pub String);

impl Task for CStdioPrint {
    const NAME: &'static str = "procpool_worker::CStdioPrint";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        let text = std::ffi::CString::new(self.0)?;
        // SAFETY: a "%s" format with one valid C string.
        let n = unsafe { nix::libc::printf(c"%s".as_ptr(), text.as_ptr()) };
        Ok(u64::try_from(n)?)
    }
}

/// Leaves a thread behind that holds the C library's stdout lock for a minute (as a
/// thread blocked in a C stdio call would): a worker that waits for that lock to
/// exit hangs until it is killed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldCStdoutLock;

impl Task for HoldCStdoutLock {
    const NAME: &'static str = "procpool_worker::HoldCStdoutLock";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        // POSIX; the libc crate does not declare them.
        extern "C" {
            static mut stdout: *mut nix::libc::FILE;
            fn flockfile(stream: *mut nix::libc::FILE);
        }
        let (locked_tx, locked) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Taking the address of a `static mut` makes no reference to it, and is safe.
            let stdout_ptr = std::ptr::addr_of!(stdout);
            // SAFETY: `stdout_ptr` points at the C library's own stream pointer, valid
            // for the process's life; it is read through the raw pointer, never written.
            let out = unsafe { stdout_ptr.read() };
            // SAFETY: `out` is the C library's own stdout stream, live for the
            // process's life; it is locked and never unlocked, on purpose.
            unsafe { flockfile(out) };
            let _ = locked_tx.send(());
            std::thread::sleep(std::time::Duration::from_secs(60));
        });
        locked.recv()?;
        Ok(u64::from(std::process::id()))
    }
}

/// A task whose `Serialize` panics in the parent, at `submit`.
#[derive(Debug, Clone)]
pub struct PanicsOnEncode;

impl Serialize for PanicsOnEncode {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("PanicsOnEncode refuses to encode")
    }
}

impl<'de> Deserialize<'de> for PanicsOnEncode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u8::deserialize(d).map(|_| PanicsOnEncode)
    }
}

impl Task for PanicsOnEncode {
    const NAME: &'static str = "procpool_worker::PanicsOnEncode";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        Ok(0)
    }
}

/// `2 * n` for any number type: one generic task, one `NAME` for every `T`. Only
/// `Double<u32>` and `Double<u64>` are registered; `Double<i32>` and `Double<f64>` are
/// not, and must never be decoded as one of them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Double<T>(pub T);

impl<T> Task for Double<T>
where
    T: std::ops::Add<Output = T> + Copy + Serialize + serde::de::DeserializeOwned + 'static,
{
    const NAME: &'static str = "procpool_worker::Double";
    type Output = T;
    fn run(self) -> Result<T, BoxError> {
        Ok(self.0 + self.0)
    }
}

/// A task no worker knows: deliberately left out of `register!`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unregistered;

impl Task for Unregistered {
    const NAME: &'static str = "procpool_worker::Unregistered";
    type Output = u64;
    fn run(self) -> Result<u64, BoxError> {
        Ok(0)
    }
}

procpool::register!(
    CountPrimes,
    Square,
    Fault,
    Reverse,
    WorkerPid,
    ParentPid,
    Touch,
    SumContext,
    WorkerEnv,
    Undecodable,
    BadOutput,
    CrashOnce,
    Tally,
    DoubleShared,
    MakeShared,
    SumShared,
    SumRanges,
    SumValues,
    OpenFds,
    MarkThenCrash,
    MarkCleanExit,
    CStdioPrint,
    HoldCStdoutLock,
    PanicsOnDecode,
    PanickyError,
    PanicsWithBadPayload,
    PanicsOnEncode,
    PidAfter,
    Double<u32>,
    Double<u64>,
);
