//! Captured output: every line a worker writes to stdout or stderr goes to a function
//! of yours, with the worker's pid, instead of to this program's own streams. A crash
//! report keeps the last stderr lines too.
//!
//! Run it with `cargo run --example captured_output`.

use std::sync::{Arc, Mutex};

use procpool::{OutputLine, OutputMode, OutputStream, TaskError};

/// Prints what it does to stdout and a warning to stderr; aborts its worker on 0.
#[procpool::task]
fn shout(n: u32) -> u32 {
    println!("working on {n}");
    eprintln!("warning: {n} is a strange number");
    if n == 0 {
        eprintln!("fatal: zero, giving up");
        std::process::abort();
    }
    n * 10
}

fn main() -> anyhow::Result<()> {
    procpool::init();

    let lines: Arc<Mutex<Vec<OutputLine>>> = Arc::default();
    let (out, err) = (lines.clone(), lines.clone());
    let pool = procpool::Pool::builder()
        .workers(2)
        .stdout(OutputMode::capture(move |line| {
            out.lock().unwrap().push(line)
        }))
        .stderr(OutputMode::capture(move |line| {
            err.lock().unwrap().push(line)
        }))
        .build()?;

    for (n, outcome) in (0..4).zip(pool.map_fn(shout, 0..4)) {
        match outcome {
            Ok(value) => println!("shout({n}) = {value}"),
            Err(error @ TaskError::Signaled { .. }) => {
                println!("shout({n}) crashed: {error}");
                println!(
                    "  its worker's last stderr lines: {:?}",
                    error.stderr_tail()
                );
            }
            Err(other) => anyhow::bail!("unexpected: {other}"),
        }
    }
    // Every line is delivered once join returns.
    pool.join();

    let lines = lines.lock().unwrap();
    let said = |stream| lines.iter().filter(|l| l.stream == stream).count();
    println!(
        "\ncaptured {} stdout and {} stderr lines, for example:",
        said(OutputStream::Stdout),
        said(OutputStream::Stderr)
    );
    for line in lines.iter().take(4) {
        println!("  worker {} {:?}: {}", line.worker, line.stream, line.text);
    }
    anyhow::ensure!(said(OutputStream::Stdout) == 4, "one stdout line per task");
    Ok(())
}
