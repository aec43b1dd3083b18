//! The transport under procpool's links, measured before choosing it: ipc-channel
//! against a plain Unix stream socket pair with length-prefixed frames.
//!
//! Both sides run in one process (an echo thread), which is enough to compare what each
//! transport costs per message: both use the same kind of kernel socket underneath.
//! `cargo bench --bench transport`.

#![expect(
    missing_docs,
    reason = "criterion_group! defines an undocumented function"
)]

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ipc_channel::ipc;

/// Writes one frame: little-endian u32 length, then the bytes.
fn write_frame(stream: &mut UnixStream, bytes: &[u8]) {
    stream
        .write_all(&(bytes.len() as u32).to_le_bytes())
        .unwrap();
    stream.write_all(bytes).unwrap();
}

/// Reads one frame into `buf`; false at end of stream.
fn read_frame(stream: &mut UnixStream, buf: &mut Vec<u8>) -> bool {
    let mut len = [0u8; 4];
    if stream.read_exact(&mut len).is_err() {
        return false;
    }
    buf.resize(u32::from_le_bytes(len) as usize, 0);
    stream.read_exact(buf).unwrap();
    true
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip");
    for size in [64usize, 4096] {
        let message = vec![7u8; size];

        let (to_echo, from_main) = ipc::bytes_channel().unwrap();
        let (to_main, from_echo) = ipc::bytes_channel().unwrap();
        let echo = thread::spawn(move || {
            while let Ok(bytes) = from_main.recv() {
                to_main.send(&bytes).unwrap();
            }
        });
        group.bench_with_input(BenchmarkId::new("ipc-channel", size), &message, |b, m| {
            b.iter(|| {
                to_echo.send(m).unwrap();
                black_box(from_echo.recv().unwrap());
            })
        });
        drop(to_echo);
        echo.join().unwrap();

        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        let echo = thread::spawn(move || {
            let mut buf = Vec::new();
            while read_frame(&mut theirs, &mut buf) {
                write_frame(&mut theirs, &buf);
            }
        });
        let mut buf = Vec::new();
        group.bench_with_input(BenchmarkId::new("socketpair", size), &message, |b, m| {
            b.iter(|| {
                write_frame(&mut ours, m);
                read_frame(&mut ours, &mut buf);
                black_box(&buf);
            })
        });
        drop(ours);
        echo.join().unwrap();
    }
    group.finish();
}

fn one_way_bulk(c: &mut Criterion) {
    const SIZE: usize = 8 << 20;
    let mut group = c.benchmark_group("one_way_8MiB");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(20);
    let message = vec![7u8; SIZE];

    // procpool's worker-to-parent path today: a typed channel of serde_bytes::ByteBuf.
    let (to_sink, from_main) = ipc::channel::<serde_bytes::ByteBuf>().unwrap();
    let (ack, acked) = ipc::channel::<u8>().unwrap();
    let sink = thread::spawn(move || {
        while let Ok(bytes) = from_main.recv() {
            black_box(bytes);
            ack.send(0).unwrap();
        }
    });
    group.bench_function("ipc-channel serde", |b| {
        b.iter(|| {
            to_sink
                .send(serde_bytes::ByteBuf::from(message.clone()))
                .unwrap();
            acked.recv().unwrap();
        })
    });
    drop(to_sink);
    sink.join().unwrap();

    let (mut ours, mut theirs) = UnixStream::pair().unwrap();
    let sink = thread::spawn(move || {
        let mut buf = Vec::new();
        while read_frame(&mut theirs, &mut buf) {
            black_box(&buf);
            theirs.write_all(&[0]).unwrap();
        }
    });
    group.bench_function("socketpair", |b| {
        b.iter(|| {
            // The same copy the ipc-channel side makes to build its ByteBuf.
            let owned = message.clone();
            write_frame(&mut ours, &owned);
            ours.read_exact(&mut [0u8]).unwrap();
        })
    });
    drop(ours);
    sink.join().unwrap();
    group.finish();
}

criterion_group!(benches, round_trip, one_way_bulk);
criterion_main!(benches);
