//! Property tests of [`Ring`]: against a reference model (the whole stream in a `Vec`), any
//! sequence of pushes keeps absolute offsets, holds exactly the newest `cap` bytes, wraps without
//! mixing bytes up, never allocates past its capacity, and peeks consistently.

use proptest::prelude::*;
use taskpool_supervisor::ring::Ring;

#[derive(Debug, Clone)]
enum Op {
    Push(Vec<u8>),
    Peek { back: u64, max: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(Op::Push),
        2 => (0u64..300, 0usize..300).prop_map(|(back, max)| Op::Peek { back, max }),
    ]
}

fn peek(r: &Ring, offset: u64, max: usize) -> Vec<u8> {
    let (a, b) = r.peek(offset, max);
    [a, b].concat()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn ring_matches_a_reference(cap in 1usize..128, ops in proptest::collection::vec(op(), 0..60)) {
        let mut r = Ring::new(cap);
        let mut all: Vec<u8> = Vec::new();
        for op in ops {
            match op {
                Op::Push(d) => {
                    r.push(&d);
                    all.extend_from_slice(&d);
                }
                Op::Peek { back, max } => {
                    let end = all.len() as u64;
                    let offset = end.saturating_sub(back);
                    let got = peek(&r, offset, max);
                    let start = end.saturating_sub(cap as u64);
                    if offset < start || offset >= end {
                        prop_assert!(got.is_empty(), "offset {} outside [{}, {})", offset, start, end);
                    } else {
                        let want_end = (offset as usize + max).min(all.len());
                        prop_assert_eq!(&got[..], &all[offset as usize..want_end]);
                    }
                }
            }
            let end = all.len() as u64;
            prop_assert_eq!(r.end(), end);
            prop_assert_eq!(r.start(), end.saturating_sub(cap as u64));
            prop_assert!(r.allocated() <= cap, "allocated {} for capacity {}", r.allocated(), cap);
            // Everything held reads back in one go, exactly the newest bytes.
            let held = peek(&r, r.start(), usize::MAX);
            prop_assert_eq!(&held[..], &all[r.start() as usize..]);
            prop_assert!(r.holds(end) && r.holds(r.start()));
            prop_assert!(r.start() == 0 || !r.holds(r.start() - 1));
        }
    }

    #[test]
    fn big_capacities_grow_lazily_and_stay_bounded(
        cap in 4096usize..100_000,
        sizes in proptest::collection::vec(0usize..40_000, 0..12),
    ) {
        let mut r = Ring::new(cap);
        let mut total = 0usize;
        for n in sizes {
            r.push(&vec![7u8; n]);
            total += n;
            prop_assert!(r.allocated() <= cap, "allocated {} > capacity {}", r.allocated(), cap);
            prop_assert_eq!(r.end() as usize, total);
        }
        if total == 0 {
            prop_assert_eq!(r.allocated(), 0);
        }
    }
}
