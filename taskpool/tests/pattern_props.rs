//! Property tests of the search pattern matcher: every value matches itself and the empty
//! pattern; any sub-object of a value (keys dropped at any depth) matches it; changing a scalar
//! the pattern names, or asking for a key the value lacks, makes it fail; arrays match exactly.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use taskpool::pattern::matches;

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z]{0,6}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-e]", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A sub-pattern of `v`: objects keep a subset of their keys (chosen by `seed`), recursively;
/// anything else is kept whole.
fn subset(v: &Value, seed: &mut u64) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if *seed >> 63 == 0 {
                    out.insert(k.clone(), subset(x, seed));
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_value_matches_itself_and_the_empty_pattern(v in value()) {
        prop_assert!(matches(&v, &v));
        if v.is_object() {
            let empty = json!({});
            prop_assert!(matches(&empty, &v));
        }
    }

    #[test]
    fn every_sub_object_matches(m in proptest::collection::btree_map("[a-e]", value(), 0..6), seed in any::<u64>()) {
        let v = Value::Object(m.into_iter().collect());
        let mut s = seed;
        let p = subset(&v, &mut s);
        prop_assert!(matches(&p, &v), "pattern {} should match {}", p, v);
    }

    #[test]
    fn a_missing_key_or_a_changed_scalar_fails(m in proptest::collection::btree_map("[a-e]", scalar(), 1..6)) {
        let v = Value::Object(m.clone().into_iter().collect());
        // A key the value does not have.
        let absent = json!({"zz": null});
        prop_assert!(!matches(&absent, &v));
        // Each named scalar changed to something else.
        for (k, x) in &m {
            let other = if *x == json!("changed") { json!(0) } else { json!("changed") };
            let changed = json!({ k.clone(): other });
            let same = json!({ k.clone(): x.clone() });
            prop_assert!(!matches(&changed, &v));
            prop_assert!(matches(&same, &v));
        }
    }

    #[test]
    fn arrays_match_only_exactly(a in proptest::collection::vec(scalar(), 0..5), extra in scalar()) {
        let v = json!({"a": a.clone()});
        let exact = json!({"a": a.clone()});
        prop_assert!(matches(&exact, &v));
        let mut longer = a.clone();
        longer.push(extra);
        let longer = json!({"a": longer});
        prop_assert!(!matches(&longer, &v));
        if !a.is_empty() {
            let shorter = json!({"a": a[1..].to_vec()});
            prop_assert!(!matches(&shorter, &v));
        }
    }

    #[test]
    fn an_object_pattern_never_matches_a_non_object(p in proptest::collection::btree_map("[a-e]", scalar(), 0..3), v in scalar()) {
        let p = Value::Object(p.into_iter().collect());
        prop_assert!(!matches(&p, &v));
    }
}
