//! The scheduler's endpoints: `Schedule`, `Schedule.List`, `Schedule.Pause`
//! and `Schedule.Resume`, with buttervolume 3.13's JSON (what its CLI and the
//! cluster's deploy handler send and read). `Schedule.List` adds, per job,
//! `NextRun`, `LastRun`, `LastResult`, `LastDurationMs`, `Running` and
//! `Skips`, and an `Invalid` list of the schedule.csv lines being skipped;
//! clients that only know the reference's four fields ignore them.

use std::sync::Arc;

use chrono::{DateTime, Local, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::{blocking, AppState, Reply};
use crate::schedule::{JobView, Listing};

pub async fn route(state: &Arc<AppState>, path: &str, body: &Value) -> Option<Reply> {
    let scheduler = state.scheduler.clone();
    let reply = match path {
        "/VolumeDriver.Schedule" => match schedule_request(body) {
            Ok((name, action, timer)) => {
                blocking(move || {
                    scheduler
                        .schedule(&name, &action, &timer)
                        .map(|_| json!({}))
                        .map_err(|e| e.to_string())
                })
                .await
            }
            Err(e) => Err(e),
        },
        "/VolumeDriver.Schedule.List" => {
            blocking(move || scheduler.list().map_err(|e| e.to_string()))
                .await
                .map(|listing| listing_json(&listing))
        }
        "/VolumeDriver.Schedule.Pause" => {
            blocking(move || {
                scheduler
                    .pause_all()
                    .map(|()| json!({}))
                    .map_err(|e| e.to_string())
            })
            .await
        }
        "/VolumeDriver.Schedule.Resume" => {
            blocking(move || {
                scheduler
                    .resume_all()
                    .map(|()| json!({}))
                    .map_err(|e| e.to_string())
            })
            .await
        }
        _ => return None,
    };
    Some(reply)
}

/// `{Name, Action, Timer}`. The reference does `str(req["Timer"])`, so
/// Timer may be a JSON number as well as a string.
fn schedule_request(body: &Value) -> Result<(String, String, String), String> {
    let text = |key: &str| -> Result<String, String> {
        match body.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) if key == "Timer" => Ok(n.to_string()),
            Some(_) if key == "Timer" => {
                Err("invalid request: Timer must be a string or a number".into())
            }
            Some(_) => Err(format!("invalid request: {key} must be a string")),
            None => Err(format!("invalid request: missing field `{key}`")),
        }
    };
    Ok((text("Name")?, text("Action")?, text("Timer")?))
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
