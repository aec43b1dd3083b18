//! Tasks written as functions with `#[procpool::task]`: the tests of `Pool::call` and
//! `Pool::map_fn` run them in every launch mode, faults included.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use procpool::Task;

use crate::{Fault, Wrapped};

/// `a * b + c`: several arguments, sent as a tuple.
#[procpool::task]
pub fn multiply_add(a: u64, b: u64, c: u64) -> u64 {
    a * b + c
}

/// The pid of the worker it runs in: no arguments, sent as `()`.
#[procpool::task]
pub fn worker_pid() -> u32 {
    std::process::id()
}

/// Half of an even `n`; an odd one is an error with a cause, under a name of its own.
#[procpool::task(name = "procpool_worker::half/v1")]
pub fn half(n: u64) -> Result<u64, Wrapped> {
    match n % 2 {
        0 => Ok(n / 2),
        _ => Err(Wrapped {
            what: "odd input",
            source: std::io::Error::other(format!("{n} has no half")),
        }),
    }
}

/// Panics with `message` when `n` is 0, else returns `n`.
#[procpool::task]
pub fn panic_at_zero(n: u64, message: String) -> u64 {
    if n == 0 {
        panic!("{message}");
    }
    n
}

/// Spins for `ms` milliseconds, then returns them: past its own limit of 1 s it times
/// out, whatever the pool's.
#[procpool::task(timeout = "1s")]
pub fn spin(ms: u64) -> u64 {
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    ms
}

/// Appends `n pid` to `log` (as [`Tally`](crate::Tally) does), then segfaults: each run
/// is counted, and it is run again twice after a crash, whatever the pool's retries.
#[procpool::task(retries = 2)]
pub fn crash_logged(log: PathBuf, n: u64) -> std::io::Result<u64> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&log)?;
    file.write_all(format!("{n} {}\n", std::process::id()).as_bytes())?;
    Fault::Segfault.run().map_err(std::io::Error::other)?;
    Ok(n)
}
