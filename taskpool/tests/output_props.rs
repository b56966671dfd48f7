//! Property tests of the output log's combined view: for any sequence of chunks written to the
//! two streams, the combined view is their concatenation in write order; reads from any offset
//! of any length agree with it; walking it piece by piece from any position gives each byte
//! once, with stream and combined offsets that point at that same byte; and each stream reads
//! back on its own.

use proptest::prelude::*;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use taskpool::output::{chunk_entry, OutputLog};
use taskpool::Stream;

static N: AtomicU32 = AtomicU32::new(0);

/// A run directory holding `chunks`, removed on drop.
struct Run(PathBuf);

impl Run {
    fn new(chunks: &[(bool, Vec<u8>)]) -> Run {
        let dir = std::env::temp_dir().join(format!(
            "taskpool-output-props-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut out = std::fs::File::create(dir.join("stdout")).unwrap();
        let mut err = std::fs::File::create(dir.join("stderr")).unwrap();
        let mut idx = std::fs::File::create(dir.join("chunks")).unwrap();
        for (is_err, d) in chunks {
            let s = if *is_err {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            if *is_err {
                err.write_all(d).unwrap()
            } else {
                out.write_all(d).unwrap()
            }
            idx.write_all(&chunk_entry(s, d.len() as u32)).unwrap();
        }
        Run(dir)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chunks() -> impl Strategy<Value = Vec<(bool, Vec<u8>)>> {
    proptest::collection::vec(
        (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40)),
        0..30,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn combined_view_is_the_write_order(cs in chunks(), from in 0usize..1200, count in 0usize..1200, max in 1usize..64) {
        let run = Run::new(&cs);
        let log = OutputLog::open(&run.0).unwrap();
        let combined: Vec<u8> = cs.iter().flat_map(|(_, d)| d.clone()).collect();
        let out: Vec<u8> = cs.iter().filter(|c| !c.0).flat_map(|(_, d)| d.clone()).collect();
        let err: Vec<u8> = cs.iter().filter(|c| c.0).flat_map(|(_, d)| d.clone()).collect();
        prop_assert_eq!(log.len(Stream::Combined) as usize, combined.len());
        prop_assert_eq!(log.read(Stream::Combined, 0, 1 << 20).unwrap(), combined.clone());
        prop_assert_eq!(log.read(Stream::Stdout, 0, 10_000).unwrap(), out.clone());
        prop_assert_eq!(log.read(Stream::Stderr, 0, 10_000).unwrap(), err.clone());
        // Any window.
        let from = from.min(combined.len());
        let to = (from + count).min(combined.len());
        prop_assert_eq!(log.read(Stream::Combined, from as u64, count).unwrap(), combined[from..to].to_vec());
        // Piece by piece from `from`: every byte once, offsets consistent.
        let mut cur = log.seek(from as u64).unwrap();
        let mut at = from;
        while let Some(p) = log.next_piece(&mut cur, max).unwrap() {
            prop_assert!(!p.data.is_empty() && p.data.len() <= max);
            prop_assert_eq!(p.combined as usize, at);
            prop_assert_eq!(&p.data[..], &combined[at..at + p.data.len()]);
            let src = if p.stream == Stream::Stderr { &err } else { &out };
            prop_assert_eq!(&p.data[..], &src[p.offset as usize..p.offset as usize + p.data.len()]);
            at += p.data.len();
        }
        prop_assert_eq!(at, combined.len());
    }
}
