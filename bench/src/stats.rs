//! Samples and the report: every measurement is a named row of samples (or one figure), printed as
//! a table of medians with min and max, and written as JSON.

use serde_json::{json, Value};
use std::time::Duration;

/// One row of the report.
pub struct Row {
    /// The section (spawn, search, idle, output, follow, many).
    pub section: &'static str,
    /// What was measured, e.g. `taskpool spawn until running`.
    pub name: String,
    /// The unit of the samples (`ms`, `KiB`, `/s`, `s`, `x`).
    pub unit: &'static str,
    /// The samples.
    pub samples: Vec<f64>,
    /// A note: the target, or why the row was skipped.
    pub note: String,
}

impl Row {
    fn sorted(&self) -> Vec<f64> {
        let mut s = self.samples.clone();
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
        s
    }

    /// The median (NaN when there are no samples: a skipped row).
    pub fn median(&self) -> f64 {
        quantile(&self.sorted(), 0.5)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> f64 {
        quantile(&self.sorted(), 0.99)
    }

    fn to_json(&self) -> Value {
        let s = self.sorted();
        json!({
            "section": self.section, "name": self.name, "unit": self.unit,
            "n": s.len(), "median": num(quantile(&s, 0.5)), "p99": num(quantile(&s, 0.99)),
            "min": num(s.first().copied().unwrap_or(f64::NAN)),
            "max": num(s.last().copied().unwrap_or(f64::NAN)),
            "note": self.note,
        })
    }
}

fn num(v: f64) -> Value {
    if v.is_finite() {
        json!((v * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// Milliseconds of a duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Every row measured in one run.
#[derive(Default)]
pub struct Report {
    /// The rows in the order measured.
    pub rows: Vec<Row>,
}

impl Report {
    /// Add a row of samples and print it at once (a long run shows progress).
    pub fn add(
        &mut self,
        section: &'static str,
        name: impl Into<String>,
        unit: &'static str,
        samples: Vec<f64>,
        note: impl Into<String>,
    ) -> usize {
        let row = Row {
            section,
            name: name.into(),
            unit,
            samples,
            note: note.into(),
        };
        eprintln!("  {}", line(&row));
        self.rows.push(row);
        self.rows.len() - 1
    }

    /// A peer (or a measurement) that could not be run here: reported, never faked.
    pub fn skip(&mut self, section: &'static str, name: impl Into<String>, why: impl Into<String>) {
        self.add(
            section,
            name,
            "-",
            Vec::new(),
            format!("skipped: {}", why.into()),
        );
    }

    /// The median of row `i`.
    pub fn median(&self, i: usize) -> f64 {
        self.rows[i].median()
    }

    /// The table of every row.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<8} {:<58} {:>10} {:>10} {:>10} {:>5} {:<5} note\n",
            "section", "measurement", "median", "min", "max", "n", "unit"
        );
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }

    /// The JSON document: metadata and every row.
    pub fn to_json(&self, meta: Value) -> Value {
        json!({ "meta": meta, "rows": self.rows.iter().map(Row::to_json).collect::<Vec<_>>() })
    }
}

fn line(r: &Row) -> String {
    let s = r.sorted();
    let f = |v: Option<f64>| match v {
        Some(v) if v.is_finite() => format!("{v:.3}"),
        _ => "-".to_owned(),
    };
    format!(
        "{:<8} {:<58} {:>10} {:>10} {:>10} {:>5} {:<5} {}",
        r.section,
        r.name,
        f(Some(quantile(&s, 0.5))),
        f(s.first().copied()),
        f(s.last().copied()),
        s.len(),
        r.unit,
        r.note
    )
}
