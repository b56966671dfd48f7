//! The pool's own settings, in `POOL/settings.json`: defaults for every task spawned into the
//! pool that does not say otherwise. There is one today, the default engine, for users who send
//! everything to a cluster (docs/slurm.md). The file is small JSON written atomically
//! ([`Pool::set_settings`]); a missing file means no settings, and a key this version does not
//! know is refused, naming the file, rather than silently ignored.
//!
//! Precedence, as the CLI applies it: the command line, then a job file, then
//! `$TASKPOOL_ENGINE`, then the pool's default, then `local`. The library's own
//! [`crate::SpawnOptions`] default to `local` whatever the pool says: a library caller who wants
//! the pool's default asks [`Pool::settings`] for it.

use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::pool::Pool;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The settings file's name in the pool directory.
pub const SETTINGS_FILE: &str = "settings.json";

/// The pool's settings (`POOL/settings.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The engine of a task that names none (and whose caller has no `$TASKPOOL_ENGINE`);
    /// `None`: `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
}

impl Pool {
    /// The settings file's path.
    pub fn settings_path(&self) -> PathBuf {
        self.path().join(SETTINGS_FILE)
    }

    /// The pool's settings; the defaults when it has none.
    pub fn settings(&self) -> Result<Settings> {
        read(self.path())
    }

    /// Replace the pool's settings (atomically, durably).
    pub fn set_settings(&self, settings: &Settings) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(settings).expect("settings always serialize");
        json.push(b'\n');
        crate::record::write_atomic(&self.settings_path(), &json, true)
    }
}

/// The settings of the pool directory `pool_dir` (the defaults when it has none), read without
/// opening the pool: for a cheap look before the command line is parsed.
pub fn read(pool_dir: &Path) -> Result<Settings> {
    let path = pool_dir.join(SETTINGS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => parse(&bytes).map_err(|why| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("{}: {why}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
        Err(e) => Err(Error::path(&path, e)),
    }
}

/// The settings in `bytes`, or why not (on one line).
fn parse(bytes: &[u8]) -> std::result::Result<Settings, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string().replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_refuse_unknown_keys() {
        assert_eq!(parse(b"{}").unwrap(), Settings::default());
        assert_eq!(
            parse(br#"{"engine": "slurm"}"#).unwrap().engine,
            Some(Engine::Slurm)
        );
        let e = parse(br#"{"engin": "slurm"}"#).unwrap_err();
        assert!(e.contains("unknown field `engin`"), "{e}");
        assert!(parse(br#"{"engine": "pbs"}"#).is_err());
    }
}
