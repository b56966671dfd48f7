//! The text table of `ls`: one row per task, plain columns without borders, every cell escaped
//! (`taskpool::wire::escape_bytes`) so a task's name or meta cannot move the cursor or colour the
//! terminal.

use comfy_table::{presets, Table};
use serde_json::Value;
use taskpool::record::Timestamp;
use taskpool::wire::escape_bytes;
use taskpool::Info;

/// The longest META summary shown, in characters.
const META_WIDTH: usize = 40;

/// Render tasks as a table with a header line; every line ends with `\n`.
pub fn render(infos: &[Info], now: Timestamp) -> String {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header([
        "ID", "STATE", "STATUS", "NAME", "PID", "TIME", "EXIT", "META",
    ]);
    for info in infos {
        let row = [
            info.id.to_string(),
            info.state.as_str().to_owned(),
            info.status.map_or("-", |s| s.as_str()).to_owned(),
            info.name.clone().unwrap_or_else(|| "-".into()),
            info.pid.map_or_else(|| "-".into(), |p| p.to_string()),
            time_cell(info, now),
            exit_cell(info),
            meta_summary(&info.meta, META_WIDTH),
        ];
        table.add_row(row.map(|cell| escape_bytes(cell.as_bytes())));
    }
    let last = table.column_count().saturating_sub(1);
    for (i, col) in table.column_iter_mut().enumerate() {
        col.set_padding((0, if i == last { 0 } else { 2 }));
    }
    let mut out = String::new();
    for line in table.lines() {
        let line = line.trim_end();
        if !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The age of a live task since it was created (`in 5m` for a scheduled task: the time left
/// before it starts); the duration of an ended one's latest run.
fn time_cell(info: &Info, now: Timestamp) -> String {
    if let (taskpool::State::Scheduled, Some(at)) = (info.state, info.next_start) {
        let left = (at - now).num_milliseconds().max(0) as f64 / 1000.0;
        return format!("in {}", short_duration(left));
    }
    if info.is_live() {
        let age = (now - info.created_at).num_milliseconds().max(0) as f64 / 1000.0;
        return short_duration(age);
    }
    info.duration.map_or_else(|| "-".into(), short_duration)
}

/// The exit code, or the name of the signal that killed the task.
fn exit_cell(info: &Info) -> String {
    match (info.exit_code, &info.signal) {
        (Some(code), _) => code.to_string(),
        (None, Some(sig)) => sig.clone(),
        (None, None) => "-".into(),
    }
}

/// A compact duration: `0.4s`, `42s`, `5m03s`, `2h05m`, `3d04h`.
pub fn short_duration(secs: f64) -> String {
    if secs < 10.0 {
        return format!("{secs:.1}s");
    }
    let s = secs as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// `k=v,k2=v2`: strings as they are, other values as compact JSON; cut to `width` characters.
pub fn meta_summary(meta: &serde_json::Map<String, Value>, width: usize) -> String {
    if meta.is_empty() {
        return "-".into();
    }
    let text = meta
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(",");
    if text.chars().count() <= width {
        return text;
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(0.42), "0.4s");
        assert_eq!(short_duration(42.0), "42s");
        assert_eq!(short_duration(303.0), "5m03s");
        assert_eq!(short_duration(7500.0), "2h05m");
        assert_eq!(short_duration(3.0 * 86400.0 + 4.0 * 3600.0), "3d04h");
    }

    #[test]
    fn meta_is_summarised_and_cut() {
        let m = json!({"owner": "ci", "progress": 40, "tags": ["a"]});
        let m = m.as_object().unwrap();
        assert_eq!(meta_summary(m, 100), r#"owner=ci,progress=40,tags=["a"]"#);
        assert_eq!(meta_summary(m, 10), "owner=ci,…");
        assert_eq!(meta_summary(&Default::default(), 10), "-");
    }
}
