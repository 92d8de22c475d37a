//! The scheduler's endpoints: `Schedule`, `Schedule.List`, `Schedule.Pause`
//! and `Schedule.Resume`, with buttervolume 3.13's JSON (what its CLI and the
//! cluster's deploy handler send and read). `Schedule.List` adds, per job,
//! `NextRun`, `LastRun`, `LastResult`, `LastDurationMs`, `Running` and
//! `Skips`, and an `Invalid` list of the schedule.csv lines being skipped;
//! clients that only know the reference's four fields ignore them.

use std::sync::Arc;

use chrono::{DateTime, Local, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::{blocking, decode, AppState, Reply};
use crate::api::{path, ScheduleRequest};
use crate::schedule::{JobView, Listing};

pub async fn route(state: &Arc<AppState>, endpoint: &str, body: &Value) -> Option<Reply> {
    let scheduler = state.scheduler.clone();
    let reply = match endpoint {
        path::SCHEDULE => match decode::<ScheduleRequest>(body) {
            Ok(req) => blocking(move || scheduler.schedule(&req.name, &req.action, &req.timer))
                .await
                .map(|_| json!({})),
            Err(e) => Err(e),
        },
        path::SCHEDULE_LIST => blocking(move || scheduler.list())
            .await
            .map(|listing| listing_json(&listing)),
        path::SCHEDULE_PAUSE => blocking(move || scheduler.pause_all())
            .await
            .map(|()| json!({})),
        path::SCHEDULE_RESUME => blocking(move || scheduler.resume_all())
            .await
            .map(|()| json!({})),
        _ => return None,
    };
    Some(reply)
}

fn listing_json(listing: &Listing) -> Value {
    let jobs: Vec<Value> = listing.jobs.iter().map(job_json).collect();
    let mut reply = json!({ "Schedule": jobs });
    if !listing.invalid.is_empty() {
        reply["Invalid"] = listing
            .invalid
            .iter()
            .map(|i| json!({ "Line": i.line, "Text": i.text, "Error": i.error }))
            .collect();
    }
    reply
}

fn job_json(job: &JobView) -> Value {
    json!({
        "Name": job.name,
        "Action": job.action,
        "Timer": job.timer,
        "Active": if job.active { "True" } else { "False" },
        "NextRun": job.next_run.map(local_time),
        "LastRun": job.last_run.map(local_time),
        "LastResult": job.last_result,
        "LastDurationMs": job.last_duration_ms,
        "Running": job.running,
        "Skips": job.skips,
    })
}

/// Times as the node's operator reads them: local, RFC 3339, to the second.
fn local_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}
