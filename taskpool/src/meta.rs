//! Task metadata helpers: `K=V` arguments (the value parsed as JSON when it parses, else kept as a
//! string) and JSON merge patches (RFC 7396: `null` deletes a key).

use crate::error::{Error, ErrorKind, Result};
use serde_json::{Map, Value};

/// Parse one `K=V` argument into a key and a JSON value.
pub fn parse_assignment(arg: &str) -> Result<(String, Value)> {
    let (k, v) = arg.split_once('=').ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("meta {arg:?} is not of the form KEY=VALUE"),
        )
    })?;
    if k.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("meta {arg:?} has an empty key"),
        ));
    }
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
    Ok((k.to_owned(), value))
}

/// Parse several `K=V` arguments into a merge patch object.
pub fn parse_assignments<I, S>(args: I) -> Result<Map<String, Value>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut m = Map::new();
    for a in args {
        let (k, v) = parse_assignment(a.as_ref())?;
        m.insert(k, v);
    }
    Ok(m)
}

/// Parse a JSON text that must be an object.
pub fn parse_object(text: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::new(
            ErrorKind::InvalidInput,
            "meta must be a JSON object",
        )),
        Err(e) => Err(Error::new(
            ErrorKind::InvalidInput,
            format!("meta is not valid JSON: {e}"),
        )),
    }
}

/// The most bytes a task's meta may take as JSON text. A patch that would make it longer is
/// refused, so that a task's record and info stay a bounded size.
pub const MAX_META: usize = 64 * 1024;

/// The error for a meta object of `len` bytes, over [`MAX_META`].
fn too_big(len: usize) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("meta would take {len} bytes as JSON, over the limit of {MAX_META}"),
    )
}

/// Check that `meta` is at most [`MAX_META`] bytes as JSON.
pub fn check_size(meta: &Map<String, Value>) -> Result<()> {
    let len = serde_json::to_vec(meta).map_or(usize::MAX, |v| v.len());
    if len > MAX_META {
        return Err(too_big(len));
    }
    Ok(())
}

/// Apply a JSON merge patch as [`merge_patch`] does, unless the result would be over
/// [`MAX_META`]: then `target` is left as it was and the error says how large it would be.
pub fn apply_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) -> Result<()> {
    let mut merged = target.clone();
    merge_patch(&mut merged, patch);
    check_size(&merged)?;
    *target = merged;
    Ok(())
}

/// Apply a JSON merge patch (RFC 7396) to an object.
pub fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Object(p) => {
                let slot = target
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(t) = slot {
                    merge_patch(t, p);
                }
            }
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patch_past_the_limit_is_refused_and_changes_nothing() {
        let mut m = Map::new();
        let big = "x".repeat(30 * 1024);
        apply_patch(&mut m, json!({"a": big}).as_object().unwrap()).unwrap();
        apply_patch(&mut m, json!({"b": big}).as_object().unwrap()).unwrap();
        let before = m.clone();
        let e = apply_patch(&mut m, json!({"c": big}).as_object().unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("over the limit of 65536"), "{e}");
        assert_eq!(m, before);
        // Shrinking while over is fine once the result fits.
        apply_patch(&mut m, json!({"a": null, "c": big}).as_object().unwrap()).unwrap();
        assert!(m.contains_key("c") && !m.contains_key("a"));
    }

    #[test]
    fn values_parse_as_json_else_string() {
        assert_eq!(parse_assignment("p=40").unwrap().1, json!(40));
        assert_eq!(parse_assignment("ok=true").unwrap().1, json!(true));
        assert_eq!(parse_assignment("o={\"a\":1}").unwrap().1, json!({"a":1}));
        assert_eq!(
            parse_assignment("s=hello world").unwrap().1,
            json!("hello world")
        );
        assert_eq!(parse_assignment("e=").unwrap().1, json!(""));
        assert!(parse_assignment("novalue").is_err());
    }

    #[test]
    fn merge_patch_follows_rfc7396() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}})
            .as_object()
            .unwrap()
            .clone();
        let p = json!({"a": null, "b": {"c": null, "e": 4}, "f": [1]});
        merge_patch(&mut t, p.as_object().unwrap());
        assert_eq!(Value::Object(t), json!({"b": {"d": 3, "e": 4}, "f": [1]}));
    }
}
