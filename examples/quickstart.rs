//! The quick start: a function becomes a task with `#[procpool::task]`, and a pool runs
//! it in worker processes. A panic in one input is that input's error; the rest finish.
//!
//! Run it with `cargo run --example quickstart`.

/// Counts the primes in `start..end`; refuses an empty range, panics on a planted input.
#[procpool::task]
fn count_primes(start: u64, end: u64) -> Result<u64, String> {
    if start == 13_000 {
        panic!("a planted bug at input {start}");
    }
    if start >= end {
        return Err(format!("empty range {start}..{end}"));
    }
    Ok((start..end).filter(|&n| is_prime(n)).count() as u64)
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

fn main() -> anyhow::Result<()> {
    // First line of main: in a worker process this call never returns.
    procpool::init();

    // One worker process per CPU core.
    let pool = procpool::Pool::new()?;

    // One task, called like the function with the pool...
    let below_100 = pool.call(count_primes, (0, 100))?.wait()?;
    println!("{below_100} primes below 100");
    // ...and the function still runs here, in this process, as a plain call.
    assert_eq!(count_primes(0, 100), Ok(below_100));

    // Many tasks: outcomes in input order, one per input, each Ok or a TaskError.
    let ranges = (0..20).map(|i| (i * 1_000, (i + 1) * 1_000));
    let mut total = 0;
    for (i, outcome) in pool.map_fn(count_primes, ranges).enumerate() {
        match outcome {
            Ok(count) => total += count,
            Err(error) => println!("range {i}: {error}"),
        }
    }
    println!("{total} primes below 20,000, the planted panic's range left out");
    anyhow::ensure!(total == 2262 - 105, "wrong count: {total}");
    Ok(())
}
