//! Micro benchmarks of the protocol: request and reply lines encoded and decoded, and the choice
//! of raw binary frames for output (a JSON header line, then the bytes) against carrying the same
//! bytes base64-encoded inside a JSON line. Also the record parse and info encode that dominate
//! `ls --json`. Run with `cargo bench -p taskpool` (`-- --test` runs each once).

use base64::Engine;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::io::Read;
use taskpool::protocol::{encode_line, parse_request, read_response, Request, Response, Stream};
use taskpool::record::Record;
use taskpool::{Info, SpawnOptions};

fn requests(c: &mut Criterion) {
    let req = Request::Read {
        stream: Stream::Combined,
        offset: Some(123_456),
        count: Some(65536),
        peek: true,
    };
    let mut line = Vec::new();
    encode_line(&req, &mut line);
    c.bench_function("request/encode read", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            encode_line(black_box(&req), &mut out);
        })
    });
    c.bench_function("request/parse read", |b| {
        b.iter(|| parse_request(black_box(&line)).unwrap())
    });
}

/// A reply frame carrying `data`, the way the supervisor sends it: header line, raw bytes.
fn raw_frame(data: &[u8], out: &mut Vec<u8>) {
    let head = Response::Data {
        stream: Stream::Stdout,
        offset: 1 << 20,
        combined: Some(1 << 20),
        len: data.len() as u64,
    };
    encode_line(&head, out);
    out.extend_from_slice(data);
}

/// The alternative: the bytes base64-encoded in the JSON line itself.
#[derive(serde::Serialize, serde::Deserialize)]
struct B64Frame {
    r#type: String,
    stream: Stream,
    offset: u64,
    data: String,
}

fn b64_frame(data: &[u8], out: &mut Vec<u8>) {
    let f = B64Frame {
        r#type: "data".into(),
        stream: Stream::Stdout,
        offset: 1 << 20,
        data: base64::engine::general_purpose::STANDARD.encode(data),
    };
    encode_line(&f, out);
}

fn output_frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("output frame");
    for size in [64usize, 4096, 65536] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        let mut out = Vec::with_capacity(size * 2);
        g.bench_with_input(BenchmarkId::new("raw encode", size), &data, |b, d| {
            b.iter(|| {
                out.clear();
                raw_frame(black_box(d), &mut out)
            })
        });
        g.bench_with_input(BenchmarkId::new("base64 encode", size), &data, |b, d| {
            b.iter(|| {
                out.clear();
                b64_frame(black_box(d), &mut out)
            })
        });
        let mut raw = Vec::new();
        raw_frame(&data, &mut raw);
        g.bench_function(BenchmarkId::new("raw decode", size), |b| {
            let (mut line, mut buf) = (Vec::new(), Vec::new());
            b.iter(|| {
                let mut r: &[u8] = black_box(&raw[..]);
                read_response(&mut r, &mut line, &mut buf).unwrap().unwrap();
                buf.len()
            })
        });
        let mut enc = Vec::new();
        b64_frame(&data, &mut enc);
        g.bench_function(BenchmarkId::new("base64 decode", size), |b| {
            b.iter(|| {
                let mut line = Vec::new();
                let _ = black_box(&enc[..]).read_to_end(&mut line);
                let f: B64Frame = serde_json::from_slice(&line[..line.len() - 1]).unwrap();
                base64::engine::general_purpose::STANDARD
                    .decode(f.data)
                    .unwrap()
                    .len()
            })
        });
    }
    g.finish();
}

fn records(c: &mut Criterion) {
    // A record as `spawn` writes it: the caller's whole environment is part of the spec.
    let spec = SpawnOptions::shell("make -j2")
        .name("build")
        .to_spec()
        .unwrap();
    let rec = serde_json::json!({
        "format": 1, "id": 42, "spec": serde_json::to_value(&spec).unwrap(), "meta": {"owner": "ops"},
        "created_at": "2026-01-01T00:00:00+00:00", "state": "running", "supervisor_pid": 1234, "reason": null,
        "runs": [{"run": 1, "pid": 1235, "started_at": "2026-01-01T00:00:00+00:00", "ended_at": null,
                  "exit_code": null, "signal": null, "status": null}]
    });
    let bytes = serde_json::to_vec_pretty(&rec).unwrap();
    c.bench_function("record/parse", |b| {
        b.iter(|| Record::parse(black_box(&bytes)).unwrap())
    });
    let parsed = Record::parse(&bytes).unwrap();
    let info = Info::from_record(&parsed);
    c.bench_function("record/to info", |b| {
        b.iter(|| Info::from_record(black_box(&parsed)))
    });
    c.bench_function("info/encode json", |b| {
        b.iter(|| serde_json::to_vec(black_box(&info)).unwrap())
    });
}

criterion_group!(benches, requests, output_frames, records);
criterion_main!(benches);
