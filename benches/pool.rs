//! The pool's hot paths through the public API, with real worker processes:
//! one task's round trip, a map of tiny tasks (batching), and an 8 MiB array out and
//! back as a `SharedSlice` against the same as a `Vec<f64>` through serde.
//!
//! `cargo bench --bench pool`. The workers re-execute this binary, so `main` calls
//! `procpool::init()` before criterion runs.

#![expect(
    missing_docs,
    reason = "criterion_group! defines an undocumented function"
)]

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use procpool::{Pool, SharedSlice};
use procpool_worker::{DoubleShared, Reverse, Square};

fn pool() -> Pool {
    procpool_worker::link();
    Pool::builder().workers(2).build().unwrap()
}

fn round_trip(c: &mut Criterion) {
    let pool = pool();
    c.bench_function("submit and wait, one task", |b| {
        b.iter(|| pool.submit(Square(7)).unwrap().wait().unwrap())
    });
}

fn tiny_map(c: &mut Criterion) {
    let pool = pool();
    let mut group = c.benchmark_group("map of tiny tasks");
    let n = 100_000u64;
    group.throughput(Throughput::Elements(n));
    group.bench_function(BenchmarkId::from_parameter(n), |b| {
        b.iter(|| pool.map((0..n).map(Square)).filter(Result::is_ok).count())
    });
    group.finish();
}

fn big_array(c: &mut Criterion) {
    let pool = pool();
    let len = (8 << 20) / 8;
    let data: Vec<f64> = vec![1.5; len];
    let mut group = c.benchmark_group("8 MiB out and back");
    group.throughput(Throughput::Bytes(2 * (8 << 20)));
    group.sample_size(20);
    group.bench_function("SharedSlice, in place", |b| {
        let mut shared = Some(SharedSlice::from_slice(&data).unwrap());
        b.iter(|| {
            let array = shared.take().unwrap();
            let back = pool.submit(DoubleShared(array)).unwrap().wait().unwrap();
            shared = Some(back);
        })
    });
    let bytes: Vec<u8> = vec![7; 8 << 20];
    group.bench_function("Vec<u8> through serde", |b| {
        b.iter(|| {
            let back = pool.submit(Reverse(bytes.clone())).unwrap().wait().unwrap();
            assert_eq!(back.len(), bytes.len());
        })
    });
    group.finish();
}

criterion_group!(benches, round_trip, tiny_map, big_array);

fn main() {
    procpool::init();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
