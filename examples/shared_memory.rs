//! Shared memory: a big array goes to the workers as a `FrozenSlice` (read-only, cheap
//! to clone), not copied into every task; a task can fill a `SharedSlice` of its own in
//! place and hand it back.
//!
//! Run it with `cargo run --release --example shared_memory`.

use std::time::Instant;

use procpool::{FrozenSlice, SharedSlice};

/// Sums `data[from..to]`: the array is mapped in the worker, nothing is copied.
#[procpool::task]
fn sum_range(data: FrozenSlice<u64>, from: usize, to: usize) -> u64 {
    data[from..to].iter().sum()
}

/// Squares every number of `buffer` in place and hands it back, still shared.
#[procpool::task]
fn square_all(mut buffer: SharedSlice<f64>) -> SharedSlice<f64> {
    buffer.iter_mut().for_each(|x| *x *= *x);
    buffer
}

fn main() -> anyhow::Result<()> {
    procpool::init();
    let pool = procpool::Pool::new()?;

    // 80 MB of numbers, written once into shared memory, then frozen: every task of
    // the map holds a clone of the same memory, and each batch sends its descriptor
    // once.
    const LEN: usize = 10_000_000;
    const CHUNK: usize = 1_000;
    let numbers: Vec<u64> = (0..LEN as u64).collect();
    let data = SharedSlice::from_slice(&numbers)?.freeze();
    let started = Instant::now();
    let chunks = (0..LEN / CHUNK).map(|i| (data.clone(), i * CHUNK, (i + 1) * CHUNK));
    let mut total = 0;
    for sum in pool.map_fn(sum_range, chunks) {
        total += sum?;
    }
    println!(
        "{} tasks summed {LEN} shared numbers to {total} in {:.0?}",
        LEN / CHUNK,
        started.elapsed()
    );
    anyhow::ensure!(total == (LEN as u64 - 1) * LEN as u64 / 2, "wrong sum");

    // A buffer a task changes in place: no copy either way.
    let buffer = SharedSlice::from_slice(&[1.5, 2.0, 3.0])?;
    let squared = pool.call(square_all, buffer)?.wait()?;
    println!("squared in a worker, read here: {:?}", &squared[..]);
    anyhow::ensure!(squared[..] == [2.25, 4.0, 9.0]);
    Ok(())
}
