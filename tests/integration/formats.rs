//! Released formats keep loading: the v1 record and protocol transcript fixtures, and the info
//! object that the shipped JSON Schema describes.

use crate::util::*;
use serde_json::Value;
use std::path::PathBuf;
use taskpool::info::Info;
use taskpool::protocol::{parse_request, Response};
use taskpool::record::Record;
use taskpool::{State, Status};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

#[test]
fn record_format_1_still_loads() {
    let rec = Record::load(&fixture("record-v1.json")).unwrap();
    eq!(
        (rec.id, rec.state, rec.status()),
        (7, State::Exited, Some(Status::Failure))
    );
    let info = Info::from_record(&rec);
    eq!(info.exit_code, Some(3));
    eq!(
        info.command,
        vec![
            "/bin/sh".into(),
            "-c".into(),
            std::ffi::OsString::from("echo hello; exit 3")
        ]
    );
    use std::os::unix::ffi::OsStrExt;
    eq!(rec.spec.env[2].1.as_bytes(), &b"\xffa"[..]);
    eq!(info.duration, Some(1.375));
}

#[test]
fn protocol_version_1_transcript_still_parses() {
    let text = std::fs::read_to_string(fixture("protocol-v1.jsonl")).unwrap();
    let mut n = 0;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let msg = serde_json::to_vec(&v["line"]).unwrap();
        match v["dir"].as_str().unwrap() {
            "send" => {
                parse_request(&msg).unwrap_or_else(|e| panic!("{line}: {e}"));
            }
            _ => {
                serde_json::from_slice::<Response>(&msg).unwrap_or_else(|e| panic!("{line}: {e}"));
            }
        }
        n += 1;
    }
    eq!(n, 19);
}

#[test]
fn info_matches_the_shipped_schema() {
    let schema: Value =
        serde_json::from_slice(&std::fs::read(fixture("../../docs/info.schema.json")).unwrap())
            .unwrap();
    let tp = TestPool::new();
    let id = tp.spawn(["--", "sleep", "30"]);
    let live = tp.info(id);
    tp.ok(["kill", &id.to_string(), "-s", "KILL"]);
    tp.run(["wait", &id.to_string()]);
    let ended = tp.info(id);
    for info in [&live, &ended] {
        for key in schema["required"].as_array().unwrap() {
            assert!(
                info.get(key.as_str().unwrap()).is_some(),
                "info lacks required {key}: {info}"
            );
        }
        for key in info.as_object().unwrap().keys() {
            assert!(
                schema["properties"].get(key).is_some(),
                "info field {key} is not in the schema"
            );
        }
        for field in ["state", "status", "behavior"] {
            let allowed = schema["properties"][field]["enum"].as_array().unwrap();
            assert!(
                allowed.contains(&info[field]),
                "{field} {} not in {allowed:?}",
                info[field]
            );
        }
    }
}
