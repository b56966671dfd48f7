//! Search patterns: a JSON value matched against a task's info as a deep subset. Objects match by
//! key (every key of the pattern must be present and match), arrays by exact equality, scalars by
//! equality.

use serde_json::Value;

/// True when `pattern` is a deep subset of `value`.
pub fn matches(pattern: &Value, value: &Value) -> bool {
    match (pattern, value) {
        (Value::Object(p), Value::Object(v)) => p
            .iter()
            .all(|(k, pv)| v.get(k).is_some_and(|vv| matches(pv, vv))),
        (Value::Object(_), _) => false,
        _ => pattern == value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deep_subset() {
        let info = json!({"a": 1, "meta": {"name": "CoolProgram", "x": 2}, "c": [1, 2, 3]});
        assert!(matches(&json!({"meta": {"name": "CoolProgram"}}), &info));
        assert!(matches(&json!({}), &info));
        assert!(matches(&json!({"c": [1, 2, 3]}), &info));
        assert!(!matches(&json!({"c": [1, 2]}), &info));
        assert!(!matches(&json!({"meta": {"name": "Other"}}), &info));
        assert!(!matches(&json!({"missing": null}), &info));
        assert!(!matches(&json!({"a": {"b": 1}}), &info));
    }
}
