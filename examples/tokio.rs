//! procpool from a tokio program (feature `async`): tasks submitted and awaited without
//! tying up a thread each, a map consumed as a stream, and `tokio::time::timeout` that
//! cancels a hung task and frees its worker.
//!
//! Run it with `cargo run --features async --example tokio`.

use std::time::Duration;

use futures::StreamExt;

/// Parses one "record": a comma-separated list of numbers, summed. A record that says
/// `loop` never ends, standing in for a parser stuck on a hostile input.
#[procpool::task]
fn parse(record: String) -> Result<u64, std::num::ParseIntError> {
    if record == "loop" {
        loop {
            std::hint::spin_loop();
        }
    }
    record.split(',').map(|n| n.trim().parse::<u64>()).sum()
}

fn main() -> anyhow::Result<()> {
    // init() before the runtime: a worker started from this program must not carry the
    // runtime's threads (`#[tokio::main]` would build the runtime before this line).
    procpool::init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let pool = procpool::Pool::builder().max_in_flight(64).build()?;

    // 500 records submitted from one async task: each submit waits for room under the
    // in-flight limit without blocking a thread; each handle is a future.
    let mut handles = Vec::new();
    for i in 0..500u64 {
        let record = format!("{i}, {}, 1", i * 2);
        handles.push(pool.call_async(parse, record).await?);
    }
    let mut total = 0;
    for handle in handles {
        total += handle.await?;
    }
    println!("500 records awaited, sum {total}");
    anyhow::ensure!(total == (0..500).map(|i| 3 * i + 1).sum::<u64>());

    // A map as a stream, outcomes as they finish; a bad record is its own error.
    let records = ["1,2", "3,x", "40,2", "7"].map(String::from);
    let mut outcomes = pool.map_fn_unordered(parse, records).into_stream();
    while let Some((index, outcome)) = outcomes.next().await {
        println!("record {index}: {outcome:?}");
    }

    // A hung task under tokio's timeout: dropping the future cancels the task and the
    // pool replaces its worker.
    let hung = pool.call_async(parse, "loop".to_owned()).await?;
    match tokio::time::timeout(Duration::from_millis(500), hung).await {
        Ok(outcome) => anyhow::bail!("the loop ended? {outcome:?}"),
        Err(_) => println!("the hung record was cancelled after 500 ms"),
    }
    let after = pool.call_async(parse, "20, 22".to_owned()).await?.await?;
    println!("the pool goes on: {after}");
    anyhow::ensure!(after == 42);
    Ok(())
}
