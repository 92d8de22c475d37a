//! Client verbs of the scheduler: schedule one job, list, pause or resume
//! them all.

use clap::Subcommand;
use serde_json::{json, Value};

use super::client::Daemon;
use super::{print, Failure};
use crate::api::{self, path};

#[derive(Subcommand, Debug)]
pub enum ScheduleVerb {
    /// Schedule, unschedule, pause or resume a periodic snapshot, replication, synchronization or purge
    Schedule {
        /// snapshot, replicate:<host>, purge:<pattern>, synchronize:<host[,host2]>
        action: String,
        /// Minutes between two runs, or cron:<expr>; 0/delete removes, pause, resume
        timer: String,
        name: String,
    },
    /// List, pause or resume all the scheduled actions
    Scheduled {
        #[arg(default_value = "list", value_parser = ["list", "pause", "resume"])]
        action: String,
        /// Show next run, last run and last result of each job
        #[arg(long, short)]
        verbose: bool,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(daemon: &Daemon, verb: ScheduleVerb) -> Result<(), Failure> {
    match verb {
        ScheduleVerb::Schedule {
            action,
            timer,
            name,
        } => {
            let request = api::ScheduleRequest {
                name,
                action,
                timer,
            };
            daemon.post::<Value>(path::SCHEDULE, request).await?;
        }
        ScheduleVerb::Scheduled {
            action,
            verbose,
            json,
        } => scheduled(daemon, &action, verbose, json).await?,
    }
    Ok(())
}

/// `scheduled [list|pause|resume]`.
async fn scheduled(
    daemon: &Daemon,
    action: &str,
    verbose: bool,
    json: bool,
) -> Result<(), Failure> {
    match action {
        "pause" => {
            daemon
                .post::<Value>(path::SCHEDULE_PAUSE, json!({}))
                .await?;
        }
        "resume" => {
            daemon
                .post::<Value>(path::SCHEDULE_RESUME, json!({}))
                .await?;
        }
        _ => {
            // Detail: the run history `--verbose` shows and the lines the
            // scheduler skips (the reference's request gets neither).
            let request = api::ScheduleListRequest { detail: true };
            let reply: Value = daemon.get_with(path::SCHEDULE_LIST, request).await?;
            let jobs = reply.get("Schedule").cloned().unwrap_or(json!([]));
            if json {
                print::json(&jobs);
            } else {
                print::schedule(&jobs, verbose);
            }
            // Lines of schedule.csv the scheduler skips: on stderr, so
            // stdout stays the reference's.
            print::invalid_lines(&reply);
        }
    }
    Ok(())
}
