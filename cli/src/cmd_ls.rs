//! `taskpool ls` (alias `search`): every task sorted by id, filtered by one JSON pattern built from
//! `--meta`, `--where`, `--state` and `--status` (matched by `Pool::search` as a deep subset), and
//! by `--live`.

use crate::args::{GlobalArgs, LsCmd};
use crate::{print, select, table};
use anyhow::Result;
use serde_json::{Map, Value};
use std::io::Write;

pub fn ls(global: &GlobalArgs, cmd: &LsCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    let infos = match pattern(cmd) {
        Some(p) => pool
            .search(&p)?
            .into_iter()
            .filter(|i| !cmd.live || i.is_live())
            .collect(),
        // Contradictory filters (e.g. --state exited with --where '{"state":"running"}').
        None => Vec::new(),
    };
    if global.json {
        print::json(&infos)?;
    } else {
        let text = table::render(&infos, taskpool::record::now());
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    Ok(0)
}

/// One pattern that all the filters must match, or `None` when they contradict each other (no
/// task can match).
fn pattern(cmd: &LsCmd) -> Option<Value> {
    let mut p = cmd.where_.clone().unwrap_or_default();
    let mut extra = Map::new();
    if !cmd.meta.is_empty() {
        let meta: Map<String, Value> = cmd.meta.iter().cloned().collect();
        extra.insert("meta".into(), Value::Object(meta));
    }
    if let Some(s) = cmd.state {
        extra.insert("state".into(), Value::String(s.as_str().into()));
    }
    if let Some(s) = cmd.status {
        extra.insert("status".into(), Value::String(s.as_str().into()));
    }
    merge_all(&mut p, extra).then_some(Value::Object(p))
}

/// Merge `add` into `into` so that the result matches exactly what both matched; false when
/// they disagree about a value (so nothing can match both).
fn merge_all(into: &mut Map<String, Value>, add: Map<String, Value>) -> bool {
    for (k, v) in add {
        match (into.get_mut(&k), v) {
            (None, v) => {
                into.insert(k, v);
            }
            (Some(Value::Object(a)), Value::Object(b)) => {
                if !merge_all(a, b) {
                    return false;
                }
            }
            (Some(a), b) => {
                if *a != b {
                    return false;
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn filters_merge_into_one_pattern() {
        let mut p = obj(json!({"meta": {"owner": "ci"}, "exit_code": 0}));
        assert!(merge_all(
            &mut p,
            obj(json!({"meta": {"kind": "build"}, "state": "exited"}))
        ));
        assert_eq!(
            Value::Object(p),
            json!({"meta": {"owner": "ci", "kind": "build"}, "exit_code": 0, "state": "exited"})
        );
    }

    #[test]
    fn contradictions_match_nothing() {
        let mut p = obj(json!({"state": "running"}));
        assert!(!merge_all(&mut p, obj(json!({"state": "exited"}))));
        let mut p = obj(json!({"meta": {"a": 1}}));
        assert!(!merge_all(&mut p, obj(json!({"meta": {"a": 2}}))));
        let mut p = obj(json!({"meta": {"a": 1}}));
        assert!(merge_all(&mut p, obj(json!({"meta": {"a": 1}}))));
    }
}
