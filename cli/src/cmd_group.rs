//! `taskpool group set NAME --parallel N|--unlimited` and `taskpool group ls`: the limits of the
//! pool's groups, kept as files in the pool (see `taskpool::group`). Setting a limit wakes the
//! head of the group's queue, so a raised limit starts queued tasks at once.

use crate::args::{GlobalArgs, GroupAction, GroupCmd, GroupSetCmd};
use crate::{print, select};
use anyhow::Result;
use comfy_table::{presets, Table};
use std::io::Write;
use taskpool::group::GroupInfo;
use taskpool::wire::escape_bytes;

pub fn group(global: &GlobalArgs, cmd: &GroupCmd) -> Result<i32> {
    match &cmd.action {
        GroupAction::Set(c) => set(global, c),
        GroupAction::Ls => ls(global),
    }
}

fn set(global: &GlobalArgs, cmd: &GroupSetCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    // clap makes --parallel and --unlimited exclusive, and one of them required.
    let limit = if cmd.unlimited { None } else { cmd.parallel };
    pool.set_group_limit(&cmd.name, limit)?;
    if global.json {
        let info = pool.groups()?.into_iter().find(|g| g.name == cmd.name);
        print::json(&info)?;
    }
    Ok(0)
}

fn ls(global: &GlobalArgs) -> Result<i32> {
    let groups = select::pool(global)?.groups()?;
    if global.json {
        print::json(&groups)?;
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(render(&groups).as_bytes())?;
        out.flush()?;
    }
    Ok(0)
}

/// The table of `group ls`, in the style of `ls`: plain columns, a header line.
fn render(groups: &[GroupInfo]) -> String {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(["NAME", "PARALLEL", "RUNNING", "QUEUED"]);
    for g in groups {
        table.add_row([
            escape_bytes(g.name.as_bytes()),
            g.parallel.map_or_else(|| "-".into(), |n| n.to_string()),
            g.running.to_string(),
            g.queued.len().to_string(),
        ]);
    }
    let last = table.column_count().saturating_sub(1);
    for (i, col) in table.column_iter_mut().enumerate() {
        col.set_padding((0, if i == last { 0 } else { 2 }));
    }
    table
        .lines()
        .map(|l| l.trim_end().to_owned())
        .filter(|l| !l.is_empty())
        .map(|l| l + "\n")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_row_per_group() {
        let groups = [
            GroupInfo {
                name: "db".into(),
                parallel: Some(2),
                running: 2,
                queued: vec![7, 8, 9],
            },
            GroupInfo {
                name: "io".into(),
                parallel: None,
                running: 0,
                queued: vec![],
            },
        ];
        assert_eq!(
            render(&groups),
            "NAME  PARALLEL  RUNNING  QUEUED\n\
             db    2         2        3\n\
             io    -         0        0\n"
        );
    }
}
