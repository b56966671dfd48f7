//! Micro benchmarks of the output ring buffer (the memory buffer of a stream that fell back from
//! splicing to copying, see `capture.rs`): appends of small and large chunks (before and after it
//! wraps) and reads at an offset. Run with `cargo bench -p taskpool-supervisor`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use taskpool_supervisor::ring::Ring;

const CAP: usize = 1 << 20;

fn push(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring push (wrapped, 1 MiB)");
    for size in [16usize, 4096, 65536] {
        let chunk = vec![7u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        let mut r = Ring::new(CAP);
        for _ in 0..(2 * CAP / size) {
            r.push(&chunk);
        }
        g.bench_with_input(BenchmarkId::from_parameter(size), &chunk, |b, ch| {
            b.iter(|| r.push(black_box(ch)))
        });
    }
    g.finish();
    c.bench_function("ring/first push (lazy allocation)", |b| {
        b.iter(|| {
            let mut r = Ring::new(CAP);
            r.push(black_box(b"hello\n"));
            r.allocated()
        })
    });
}

fn peek(c: &mut Criterion) {
    let mut r = Ring::new(CAP);
    let chunk = vec![1u8; 4096];
    for _ in 0..(3 * CAP / 4096 + 7) {
        r.push(&chunk);
    }
    let mid = r.start() + (CAP as u64) / 2;
    c.bench_function("ring/peek 64 KiB", |b| {
        b.iter(|| {
            let (a, z) = r.peek(black_box(mid), 65536);
            a.len() + z.len()
        })
    });
}

criterion_group!(benches, push, peek);
criterion_main!(benches);
