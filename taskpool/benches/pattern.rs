//! Micro benchmarks of search patterns: a deep-subset match of a pattern against a task's info,
//! as `ls --meta`/`--where` do for every task. Run with `cargo bench -p taskpool --bench pattern`.

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use std::hint::black_box;
use taskpool::pattern::matches;

fn patterns(c: &mut Criterion) {
    let info = json!({
        "id": 42, "name": "build", "state": "running", "status": null,
        "command": ["/bin/sh", "-c", "make -j2"], "cwd": "/src/project", "pid": 1235,
        "supervisor_pid": 1234, "behavior": "daemon", "run": 1,
        "meta": {"owner": "ops", "ticket": "OPS-12", "progress": 40, "tags": ["a", "b"]},
        "streams": {"stdout": {"start": 0, "end": 100, "dropped": 0}}
    });
    let hit = json!({"meta": {"owner": "ops", "ticket": "OPS-12"}, "state": "running"});
    let miss = json!({"meta": {"owner": "dev"}});
    c.bench_function("pattern/match nested hit", |b| {
        b.iter(|| matches(black_box(&hit), black_box(&info)))
    });
    c.bench_function("pattern/match early miss", |b| {
        b.iter(|| matches(black_box(&miss), black_box(&info)))
    });
    c.bench_function("pattern/match empty", |b| {
        b.iter(|| matches(black_box(&json!({})), black_box(&info)))
    });
}

criterion_group!(benches, patterns);
criterion_main!(benches);
