//! A map of 10,000 tasks that read one 80 MB array: as a `FrozenSlice` every task
//! holds (its descriptor sent once per batch), against the same tasks carrying their
//! part of the array by value, and against 10,000 submits of the `FrozenSlice` tasks.
//!
//! `cargo bench --bench shared_map`. A binary of its own, so that its maps do not
//! change how the compiler inlines those of `benches/pool.rs`. The workers re-execute
//! this binary, so `main` calls `procpool::init()` before criterion runs.

#![expect(
    missing_docs,
    reason = "criterion_group! defines an undocumented function"
)]

use criterion::{criterion_group, Criterion, Throughput};
use procpool::{FrozenSlice, Pool, SharedSlice};
use procpool_worker::{SumRanges, SumValues};

/// 10,000 tasks each summing 1,000 numbers of a 10 M-number array, three ways.
fn shared_array_map(c: &mut Criterion) {
    procpool_worker::link();
    let pool = Pool::builder().workers(2).build().unwrap();
    let (tasks, per_task) = (10_000usize, 1_000usize);
    let numbers: Vec<u64> = (0..(tasks * per_task) as u64).collect();
    let total: u64 = numbers.iter().sum();
    let frozen = SharedSlice::from_slice(&numbers).unwrap().freeze();
    let ranges = |frozen: &FrozenSlice<u64>| {
        let frozen = frozen.clone();
        (0..tasks).map(move |i| SumRanges {
            arrays: vec![frozen.clone()],
            from: i * per_task,
            to: (i + 1) * per_task,
            abort: false,
        })
    };
    let mut group = c.benchmark_group("map of 10,000 sums over an 80 MB array");
    group.throughput(Throughput::Elements(tasks as u64));
    group.sample_size(10);
    group.bench_function("FrozenSlice, map", |b| {
        b.iter(|| {
            let sum: u64 = pool.map(ranges(&frozen)).map(Result::unwrap).sum();
            assert_eq!(sum, total);
        })
    });
    group.bench_function("by value, map", |b| {
        b.iter(|| {
            let inputs = numbers.chunks(per_task).map(|c| SumValues(c.to_vec()));
            let sum: u64 = pool.map(inputs).map(Result::unwrap).sum();
            assert_eq!(sum, total);
        })
    });
    group.bench_function("FrozenSlice, submit each", |b| {
        b.iter(|| {
            let handles: Vec<_> = ranges(&frozen).map(|t| pool.submit(t).unwrap()).collect();
            let sum: u64 = handles.into_iter().map(|h| h.wait().unwrap()).sum();
            assert_eq!(sum, total);
        })
    });
    group.finish();
}

criterion_group!(benches, shared_array_map);

fn main() {
    procpool::init();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
