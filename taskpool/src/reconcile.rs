//! Judging a scheduler task that its supervisor has not reported on: merging the scheduler's view
//! of its job ([`JobView`]) into a live record. On a node other than the supervisor's (and on file
//! systems whose locks are node-local) a free task lock proves nothing, so liveness is the
//! scheduler's word: a pending job is `queued` with the scheduler's reason; a job that is
//! allocated is left to its supervisor; a job the scheduler has ended, or forgotten, while the
//! record still says live ends the task truthfully, with the scheduler's reason. A held lock
//! always wins: its holder is alive and will write the record. (Who stores an end, and who runs
//! the hooks of a task that never started, is [`crate::pool::Pool`]'s `settle`.)

use crate::engine::{JobRecord, JobView, Phase};
use crate::record::{self, Record, State, Status};

/// Merge `view` (`None`: the scheduler does not know the job) into `rec`, a live record of a
/// scheduler task; `lock_held` when the task's lock is held here. Returns true when `rec` has been
/// ended by this and should be stored. `pred_status` gives a predecessor's status, to name the
/// one that made a dependency fail.
pub(crate) fn merge(
    rec: &mut Record,
    view: Option<&JobView>,
    lock_held: bool,
    pred_status: &dyn Fn(u64) -> Option<Status>,
) -> bool {
    let job = rec.job.get_or_insert_with(JobRecord::default);
    if let Some(v) = view {
        job.state = Some(v.state.clone());
        job.reason.clone_from(&v.reason);
        if job.node.is_none() {
            job.node.clone_from(&v.node);
        }
    }
    if lock_held {
        return false;
    }
    let Some(job_id) = job.job_id else {
        end_lost(
            rec,
            "its submission to Slurm did not complete (the submitter ended first)".into(),
        );
        return true;
    };
    let Some(v) = view else {
        let why = if rec.runs.is_empty() {
            format!("Slurm no longer knows job {job_id}, and its supervisor never started the task")
        } else {
            format!(
                "Slurm no longer knows job {job_id}, and its supervisor (pid {}) did not record the end",
                rec.supervisor_pid.unwrap_or(0)
            )
        };
        end_lost(rec, why);
        return true;
    };
    if v.phase() != Phase::Ended {
        return false;
    }
    let said = match &v.reason {
        Some(r) => format!("{} ({r})", v.state),
        None => v.state.clone(),
    };
    if rec.runs.is_empty() {
        // The supervisor never ran the command: the job ended before it, or instead of it.
        let why = match v.reason.as_deref() {
            Some("DependencyNeverSatisfied") => {
                let failed: Vec<String> = rec
                    .spec
                    .plan
                    .predecessors()
                    .into_iter()
                    .filter_map(|p| {
                        pred_status(p).map(|s| format!("task {p} ended {}", s.as_str()))
                    })
                    .collect();
                let named = if failed.is_empty() {
                    String::new()
                } else {
                    format!(": predecessor {}", failed.join(", "))
                };
                format!("Slurm cancelled job {job_id} (DependencyNeverSatisfied){named}")
            }
            _ if v.state == "CANCELLED" => {
                format!("Slurm job {job_id} was cancelled while pending: {said}")
            }
            _ => format!("Slurm job {job_id} ended {said} before its supervisor started the task"),
        };
        rec.state = State::Skipped;
        rec.reason = Some(why);
        rec.waiting_for = None;
        rec.next_start = None;
        return true;
    }
    let node = rec
        .job
        .as_ref()
        .and_then(|j| j.node.clone())
        .map_or(String::new(), |n| format!(" on {n}"));
    let why =
        format!("Slurm ended job {job_id}{node} {said} without its supervisor recording the end");
    let status = match v.state.as_str() {
        "TIMEOUT" | "DEADLINE" => Some(Status::Timeout),
        "CANCELLED" | "PREEMPTED" | "OUT_OF_MEMORY" => Some(Status::Killed),
        _ => None,
    };
    match status {
        Some(s) => {
            rec.state = State::Exited;
            rec.reason = Some(why);
            if let Some(run) = rec.current_mut() {
                run.status = Some(s);
                run.ended_at.get_or_insert_with(record::now);
            }
        }
        None => end_lost(rec, why),
    }
    true
}

/// End `rec` as `lost`, with `why`.
fn end_lost(rec: &mut Record, why: String) {
    rec.lost_from = Some(rec.state);
    rec.state = State::Lost;
    if let Some(run) = rec.current_mut() {
        run.status = Some(Status::Lost);
    }
    rec.reason = Some(why);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(job: Option<u64>) -> Record {
        let spec = crate::SpawnOptions::shell("true")
            .engine(crate::Engine::Slurm)
            .to_spec()
            .unwrap();
        let mut rec: Record = serde_json::from_value(serde_json::json!({
            "format": 1, "id": 3, "spec": spec, "meta": {}, "created_at": record::now(),
            "state": "queued", "supervisor_pid": null, "runs": []
        }))
        .unwrap();
        rec.job = Some(JobRecord {
            job_id: job,
            ..Default::default()
        });
        rec
    }

    fn view(state: &str, reason: Option<&str>) -> JobView {
        JobView {
            job_id: 9,
            state: state.into(),
            reason: reason.map(Into::into),
            node: None,
        }
    }

    #[test]
    fn pending_stays_queued_with_the_reason() {
        let mut rec = queued(Some(9));
        assert!(!merge(
            &mut rec,
            Some(&view("PENDING", Some("JobHeldUser"))),
            false,
            &|_| None
        ));
        assert_eq!(rec.state, State::Queued);
        assert_eq!(rec.job.unwrap().reason.as_deref(), Some("JobHeldUser"));
    }

    #[test]
    fn a_cancelled_pending_job_is_skipped_with_the_reason() {
        let mut rec = queued(Some(9));
        assert!(merge(
            &mut rec,
            Some(&view("CANCELLED", Some("JobHeldUser"))),
            false,
            &|_| None
        ));
        assert_eq!(rec.state, State::Skipped);
        assert_eq!(
            rec.reason.as_deref(),
            Some("Slurm job 9 was cancelled while pending: CANCELLED (JobHeldUser)")
        );
    }

    #[test]
    fn a_held_lock_wins_over_slurm() {
        let mut rec = queued(Some(9));
        assert!(!merge(&mut rec, None, true, &|_| None));
        assert_eq!(rec.state, State::Queued);
    }

    #[test]
    fn a_forgotten_job_is_lost() {
        let mut rec = queued(Some(9));
        assert!(merge(&mut rec, None, false, &|_| None));
        assert_eq!(rec.state, State::Lost);
    }
}
