//! The scheduler's endpoints: `Schedule`, `Schedule.List`, `Schedule.Pause`
//! and `Schedule.Resume`, with buttervolume 3.13's JSON (what its CLI and the
//! cluster's deploy handler send and read). `Schedule.List` answers the
//! reference's four fields per job and nothing more, unless the request
//! asks for `Detail` (our CLI does): then each job also has `NextRun`,
//! `LastRun`, `LastResult`, `LastDurationMs`, `Running` and `Skips`, and
//! an `Invalid` list names the schedule.csv lines being skipped.

use std::sync::Arc;

use chrono::{DateTime, Local, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::{blocking, decode, AppState, Reply};
use crate::api::endpoint::Schedule;
use crate::api::{ScheduleListRequest, ScheduleRequest};
use crate::schedule::{JobView, Listing};

pub async fn route(state: &Arc<AppState>, endpoint: Schedule, body: &Value) -> Reply {
    let scheduler = state.scheduler.clone();
    match endpoint {
        Schedule::Schedule => match decode::<ScheduleRequest>(body) {
            Ok(req) => blocking(move || scheduler.schedule(&req.name, &req.action, &req.timer))
                .await
                .map(|_| json!({})),
            Err(e) => Err(e),
        },
        Schedule::List => match decode::<ScheduleListRequest>(body) {
            Ok(req) => blocking(move || scheduler.list())
                .await
                .map(|listing| listing_json(&listing, req.detail)),
            Err(e) => Err(e),
        },
        Schedule::Pause => blocking(move || scheduler.pause_all())
            .await
            .map(|()| json!({})),
        Schedule::Resume => blocking(move || scheduler.resume_all())
            .await
            .map(|()| json!({})),
    }
}

fn listing_json(listing: &Listing, detail: bool) -> Value {
    let jobs: Vec<Value> = listing
        .jobs
        .iter()
        .map(|job| job_json(job, detail))
        .collect();
    let mut reply = json!({ "Schedule": jobs });
    if detail && !listing.invalid.is_empty() {
        reply["Invalid"] = listing
            .invalid
            .iter()
            .map(|i| json!({ "Line": i.line, "Text": i.text, "Error": i.error }))
            .collect();
    }
    reply
}

/// A job as the reference lists it (four strings, Active as the CSV spells
/// it), with its run history when asked for.
fn job_json(job: &JobView, detail: bool) -> Value {
    let mut value = json!({
        "Name": job.name,
        "Action": job.action,
        "Timer": job.timer,
        "Active": if job.active { "True" } else { "False" },
    });
    if detail {
        value["NextRun"] = json!(job.next_run.map(local_time));
        value["LastRun"] = json!(job.last_run.map(local_time));
        value["LastResult"] = json!(job.last_result);
        value["LastDurationMs"] = json!(job.last_duration_ms);
        value["Running"] = json!(job.running);
        value["Skips"] = json!(job.skips);
    }
    value
}

/// Times as the node's operator reads them: local, RFC 3339, to the second.
fn local_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}
