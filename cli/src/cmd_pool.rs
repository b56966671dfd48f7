//! `taskpool pool set --engine E` and `taskpool pool show`: the pool's settings, kept in
//! `POOL/settings.json` (see `taskpool::settings`).

use crate::args::{GlobalArgs, PoolAction, PoolCmd, PoolSetCmd};
use crate::{print, select};
use anyhow::Result;
use taskpool::settings::Settings;

pub fn pool(global: &GlobalArgs, cmd: &PoolCmd) -> Result<i32> {
    match &cmd.action {
        PoolAction::Set(c) => set(global, c),
        PoolAction::Show => show(global),
    }
}

fn set(global: &GlobalArgs, cmd: &PoolSetCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    let mut settings = pool.settings()?;
    if let Some(e) = cmd.engine {
        settings.engine = e.0;
    }
    pool.set_settings(&settings)?;
    if global.json {
        print::json(&settings)?;
    }
    Ok(0)
}

fn show(global: &GlobalArgs) -> Result<i32> {
    let settings = select::pool(global)?.settings()?;
    if global.json {
        print::json(&settings)?;
    } else {
        print::line(render(&settings))?;
    }
    Ok(0)
}

/// One `KEY VALUE` line per setting, `-` for one not set.
fn render(s: &Settings) -> String {
    format!("engine {}", s.engine.map_or("-", |e| e.as_str()))
}
