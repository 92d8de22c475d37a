//! The node-wide problems of `status`: the schedule's (paused,
//! unreadable, skipped lines, jobs for missing volumes) and paired keys
//! without a scope.

use std::collections::BTreeMap;

use super::ScheduleState;
use crate::api::{Problem, ProblemKind};

/// Paired keys that read every volume (installed before keys were scoped).
pub(super) fn key_problems(config: &crate::config::Config) -> Vec<Problem> {
    crate::replication::scope::unscoped_keys(config)
        .into_iter()
        .map(|key| Problem {
            kind: ProblemKind::UnscopedKey,
            volume: None,
            peer: None,
            message: crate::replication::scope::unscoped_key_message(&key),
        })
        .collect()
}

pub(super) fn schedule_problems(schedule: &ScheduleState, volumes: &[String]) -> Vec<Problem> {
    let global = |kind, message: String| Problem {
        kind,
        volume: None,
        peer: None,
        message,
    };
    let listing = match schedule {
        ScheduleState::Listed(listing) => listing,
        ScheduleState::Paused => {
            return vec![global(
                ProblemKind::SchedulePaused,
                "the schedule is globally paused: no snapshot, replication or purge runs".into(),
            )]
        }
        ScheduleState::Unreadable(e) => {
            return vec![global(
                ProblemKind::ScheduleUnreadable,
                format!("the schedule cannot be read: {e}"),
            )]
        }
    };
    let mut out: Vec<Problem> = listing
        .invalid
        .iter()
        .map(|i| {
            global(
                ProblemKind::InvalidScheduleLine,
                format!("schedule.csv line {} is skipped: {}", i.line, i.error),
            )
        })
        .collect();
    let mut orphans: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for job in &listing.jobs {
        if volumes.binary_search(&job.name).is_err() {
            orphans.entry(&job.name).or_default().push(&job.action);
        }
    }
    for (volume, actions) in orphans {
        out.push(Problem {
            kind: ProblemKind::MissingVolume,
            volume: Some(volume.to_string()),
            peer: None,
            message: format!(
                "jobs are scheduled for {volume}, which does not exist here: {}",
                actions.join(", ")
            ),
        });
    }
    out
}
