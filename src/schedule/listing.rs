//! What `VolumeDriver.Schedule.List` shows: every valid job of
//! schedule.csv with its history and next run, and the lines the scheduler
//! skips (the endpoint's JSON is made in `crate::server::schedule`).

use chrono::{DateTime, Utc};

use super::self_host::SelfLook;
use super::table::Table;

/// One job as `Schedule.List` shows it.
#[derive(Debug, Clone)]
pub struct JobView {
    pub name: String,
    pub action: String,
    pub timer: String,
    pub active: bool,
    /// `None` when paused.
    pub next_run: Option<DateTime<Utc>>,
    pub last_run: Option<DateTime<Utc>>,
    pub last_result: Option<String>,
    pub last_ok: Option<bool>,
    pub last_duration_ms: Option<u64>,
    pub running: bool,
    pub skips: u64,
    /// A `replicate:` line naming this node: listed, never run here
    /// ([`super::self_host`]).
    pub ignored_here: bool,
}

/// A line of schedule.csv the scheduler skips.
#[derive(Debug, Clone)]
pub struct InvalidView {
    pub line: usize,
    pub text: String,
    pub error: String,
}

#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub jobs: Vec<JobView>,
    pub invalid: Vec<InvalidView>,
}

/// The listing of `table` at `now`. A line `me` ignores (it names this
/// node, [`super::self_host`]) is listed without a next run.
pub(super) fn build(table: &Table, me: &SelfLook, now: DateTime<Utc>) -> Listing {
    let jobs = table
        .file
        .jobs()
        .map(|job| {
            let run = table.runs.get(&job.key);
            let record = run.map(|r| r.record.clone()).unwrap_or_default();
            let ignored_here = !me.runs_here(job);
            let next_run = (job.active && !ignored_here)
                .then(|| {
                    job.timer
                        .next_due(record.base(), record.seen.unwrap_or(now), &table.rounds)
                })
                .flatten();
            JobView {
                name: job.name().to_string(),
                action: job.action_text().to_string(),
                timer: job.timer_text.clone(),
                active: job.active,
                next_run,
                last_run: record.last_run,
                last_result: record.last_result,
                last_ok: record.last_ok,
                last_duration_ms: record.last_duration_ms,
                running: run.is_some_and(|r| r.running),
                skips: record.skips,
                ignored_here,
            }
        })
        .collect();
    let invalid = table
        .file
        .invalid()
        .map(|i| InvalidView {
            line: i.number,
            text: String::from_utf8_lossy(&i.raw).into_owned(),
            error: i.error.to_string(),
        })
        .collect();
    Listing { jobs, invalid }
}
