//! Resource limits, scheduling priority and OOM score a task runs with: `--limit NAME=SOFT[:HARD]`,
//! `--nice N`, `--oom-score-adj N`. This module owns their names, parsing and the checks made at
//! spawn (a raise the caller is not permitted is refused there, naming the limit); the supervisor
//! applies them in the task's process just before `exec`.
//!
//! Kernel semantics worth knowing: `cpu` and `fsize` apply to each process on its own (a child
//! starts with a fresh CPU count); `nproc` counts all of the user's processes, supervisors
//! included, and does not bind root; `as` (alias `memory`) bounds the address space, not the
//! resident memory.

use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One limit: `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    /// The soft limit, what the kernel enforces.
    pub soft: Option<u64>,
    /// The hard limit, the ceiling the task may raise its soft limit to.
    pub hard: Option<u64>,
}

/// The limits of a task, keyed by their names in [`NAMES`].
pub type Limits = BTreeMap<String, Limit>;

/// How a limit's values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Count,
    Size,
    Seconds,
}

/// The limits `--limit` takes: name, `RLIMIT_*` resource, unit. `memory` is another name for `as`.
pub const NAMES: [&str; 7] = ["nofile", "nproc", "as", "cpu", "fsize", "core", "stack"];

fn lookup(name: &str) -> Option<(&'static str, libc::__rlimit_resource_t, Unit)> {
    Some(match name {
        "nofile" => ("nofile", libc::RLIMIT_NOFILE, Unit::Count),
        "nproc" => ("nproc", libc::RLIMIT_NPROC, Unit::Count),
        "as" | "memory" => ("as", libc::RLIMIT_AS, Unit::Size),
        "cpu" => ("cpu", libc::RLIMIT_CPU, Unit::Seconds),
        "fsize" => ("fsize", libc::RLIMIT_FSIZE, Unit::Size),
        "core" => ("core", libc::RLIMIT_CORE, Unit::Size),
        "stack" => ("stack", libc::RLIMIT_STACK, Unit::Size),
        _ => return None,
    })
}

/// The `RLIMIT_*` resource of a limit name of [`NAMES`].
pub fn resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    lookup(name).map(|(_, r, _)| r)
}

fn invalid(m: String) -> Error {
    Error::new(ErrorKind::InvalidInput, m)
}

fn parse_value(name: &str, unit: Unit, v: &str) -> Result<Option<u64>> {
    if v == "unlimited" || v == "infinity" {
        return Ok(None);
    }
    let parsed = match unit {
        Unit::Count => v.parse::<u64>().map_err(|e| e.to_string()),
        Unit::Size => crate::units::parse_size(v).map_err(|e| e.message().to_owned()),
        Unit::Seconds => crate::units::parse_duration(v)
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
            .map_err(|e| e.message().to_owned()),
    };
    parsed
        .map(Some)
        .map_err(|e| invalid(format!("limit {name}: bad value {v:?}: {e}")))
}

/// Parse `NAME=SOFT[:HARD]` (without `:HARD` the hard limit is SOFT). Values take the SIZE
/// (`64K`, `1GiB`) or DURATION (`90`, `5m`) forms where they fit, or `unlimited`.
pub fn parse_limit(arg: &str) -> Result<(String, Limit)> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| invalid(format!("limit {arg:?} is not of the form NAME=SOFT[:HARD]")))?;
    let (canon, _, unit) = lookup(name).ok_or_else(|| {
        invalid(format!(
            "unknown limit {name:?} (known: {}, memory)",
            NAMES.join(", ")
        ))
    })?;
    let (soft, hard) = match value.split_once(':') {
        Some((s, h)) => (parse_value(canon, unit, s)?, parse_value(canon, unit, h)?),
        None => {
            let v = parse_value(canon, unit, value)?;
            (v, v)
        }
    };
    let limit = Limit { soft, hard };
    check_order(canon, &limit)?;
    Ok((canon.to_owned(), limit))
}

fn check_order(name: &str, l: &Limit) -> Result<()> {
    let above = match (l.soft, l.hard) {
        (None, Some(_)) => true,
        (Some(s), Some(h)) => s > h,
        _ => false,
    };
    if above {
        return Err(invalid(format!(
            "limit {name}: the soft limit is above the hard limit"
        )));
    }
    Ok(())
}

fn to_rlim(v: Option<u64>) -> libc::rlim_t {
    v.map_or(libc::RLIM_INFINITY, |v| v as libc::rlim_t)
}

fn from_rlim(v: libc::rlim_t) -> Option<u64> {
    (v != libc::RLIM_INFINITY).then_some(v)
}

/// A limit as the kernel takes it.
pub fn to_rlimit(l: &Limit) -> libc::rlimit {
    libc::rlimit {
        rlim_cur: to_rlim(l.soft),
        rlim_max: to_rlim(l.hard),
    }
}

/// This process's own limit of `resource` (what a task inherits when it sets none).
pub fn current(resource: libc::__rlimit_resource_t) -> Limit {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    unsafe { libc::getrlimit(resource, &mut r) };
    Limit {
        soft: from_rlim(r.rlim_cur),
        hard: from_rlim(r.rlim_max),
    }
}

/// True when this process has capability `cap` in its effective set (root has all of them).
fn has_capability(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << cap) != 0)
}

const CAP_SYS_NICE: u32 = 23;
const CAP_SYS_RESOURCE: u32 = 24;

/// Check limits, `nice` and `oom_score_adj` against what this process (the task's caller, whose
/// limits the supervisor inherits) may give: a raise past its hard limit, a lower nice value or
/// a lower OOM score needs a capability (root has it). Refused with an error naming the value.
pub fn check(limits: &Limits, nice: Option<i32>, oom_score_adj: Option<i32>) -> Result<()> {
    // Read only when a limit needs it: it costs a read of /proc.
    let mut privileged = None;
    for (name, l) in limits {
        let (canon, res, _) =
            lookup(name).ok_or_else(|| invalid(format!("unknown limit {name:?}")))?;
        check_order(canon, l)?;
        let ours = current(res);
        let raises = match (ours.hard, l.hard) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(o), Some(h)) => h > o,
        };
        if raises && !*privileged.get_or_insert_with(|| has_capability(CAP_SYS_RESOURCE)) {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "limit {canon}: hard limit {} is above the caller's {} (raising it needs CAP_SYS_RESOURCE)",
                    show(l.hard),
                    show(ours.hard)
                ),
            ));
        }
    }
    if let Some(n) = nice {
        if !(-20..=19).contains(&n) {
            return Err(invalid(format!("nice {n} is out of range (-20 to 19)")));
        }
        // SAFETY: getpriority takes no pointers; errno is cleared first to tell -1 apart.
        let ours = unsafe {
            *libc::__errno_location() = 0;
            libc::getpriority(libc::PRIO_PROCESS, 0)
        };
        let rlimit_nice = current(libc::RLIMIT_NICE).soft.unwrap_or(40) as i32;
        if n < ours && 20 - n > rlimit_nice && !has_capability(CAP_SYS_NICE) {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("nice {n}: below the caller's {ours} (lowering it needs CAP_SYS_NICE)"),
            ));
        }
    }
    if let Some(n) = oom_score_adj {
        if !(-1000..=1000).contains(&n) {
            return Err(invalid(format!(
                "oom score adjustment {n} is out of range (-1000 to 1000)"
            )));
        }
        let ours: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if n < ours && !*privileged.get_or_insert_with(|| has_capability(CAP_SYS_RESOURCE)) {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "oom score adjustment {n}: below the caller's {ours} (lowering it needs CAP_SYS_RESOURCE)"
                ),
            ));
        }
    }
    Ok(())
}

fn show(v: Option<u64>) -> String {
    v.map_or("unlimited".to_owned(), |v| v.to_string())
}

/// The words for a run that a signal ended because it hit a limit: `SIGXCPU` (the `cpu` soft
/// limit), `SIGXFSZ` (`fsize`), or `SIGKILL` when the process's CPU time (`cpu_secs`, from its
/// rusage) reached at least half a `cpu` hard limit (the rusage reads well under the kernel's
/// own clock on a busy machine). `None` for any other end. The supervisor does not ask for a
/// SIGKILL it sent itself; a `kill -9` from outside, past half the limit, is taken for it.
pub fn killed_by_limit(limits: &Limits, signal: &str, cpu_secs: Option<f64>) -> Option<String> {
    match signal {
        "SIGXCPU" => Some("killed: CPU time limit (SIGXCPU)".to_owned()),
        "SIGXFSZ" => Some("killed: file size limit (SIGXFSZ)".to_owned()),
        "SIGKILL" => {
            let hard = limits.get("cpu").and_then(|l| l.hard)?;
            // The kernel kills at the limit by its own clock; the rusage it reports afterwards
            // reads under it, the more so the busier the machine (0.76 s for a 1 s limit seen
            // on 2 loaded cores). The caller rules out the SIGKILLs it sent itself.
            let slack = hard as f64 * 0.5;
            (cpu_secs? + slack >= hard as f64)
                .then(|| format!("killed: CPU time hard limit of {hard}s (SIGKILL)"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_with_units_and_refuse_bad_ones() {
        let l = |soft, hard| Limit { soft, hard };
        assert_eq!(
            parse_limit("nofile=16").unwrap(),
            ("nofile".into(), l(Some(16), Some(16)))
        );
        assert_eq!(
            parse_limit("memory=1G:unlimited").unwrap(),
            ("as".into(), l(Some(1 << 30), None))
        );
        assert_eq!(
            parse_limit("cpu=1m:90").unwrap(),
            ("cpu".into(), l(Some(60), Some(90)))
        );
        for (bad, says) in [
            ("nofile", "NAME=SOFT"),
            ("files=3", "unknown limit \"files\""),
            ("nofile=x", "limit nofile: bad value"),
            ("cpu=10:5", "soft limit is above"),
            ("core=unlimited:1M", "soft limit is above"),
        ] {
            let e = parse_limit(bad).unwrap_err();
            assert!(e.message().contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn limit_kills_are_told_apart() {
        let mut limits = Limits::new();
        assert!(killed_by_limit(&limits, "SIGXCPU", None)
            .unwrap()
            .contains("CPU time limit"));
        assert_eq!(killed_by_limit(&limits, "SIGKILL", Some(5.0)), None);
        limits.insert(
            "cpu".into(),
            Limit {
                soft: Some(1),
                hard: Some(2),
            },
        );
        assert!(killed_by_limit(&limits, "SIGKILL", Some(2.0)).is_some());
        // The rusage read a little under the limit the kernel enforced.
        assert!(killed_by_limit(&limits, "SIGKILL", Some(1.5)).is_some());
        assert_eq!(killed_by_limit(&limits, "SIGKILL", Some(0.9)), None);
        assert_eq!(killed_by_limit(&limits, "SIGTERM", Some(9.0)), None);
    }
}
