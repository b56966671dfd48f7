//! Times: parsing `--at` forms, cron expressions, and computing a task's next firing.
//! (Stub until the schedule module lands.)

use crate::error::Result;
use crate::plan::Plan;

/// Check a plan's times and expressions at spawn.
pub fn check_plan(_plan: &Plan) -> Result<()> {
    Ok(())
}
