//! The backup part of `status`: each volume's last backup per target
//! (from [`crate::backup::record`], this node's memory of its backups)
//! and the problems: a backup older than twice its `backup:<target>`
//! job's period (or none yet once the job ran), and a failed check of a
//! target.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{human_duration, period, seconds_since};
use crate::api::backup::BackupStatus;
use crate::api::{Problem, ProblemKind, VolumeStatus};
use crate::backup::record::Record;
use crate::schedule::{Action, JobView};

/// Every target's record on this node.
pub fn records(store: &crate::volumes::VolumeStore) -> BTreeMap<String, Record> {
    crate::backup::record::all(&store.config().state_path)
}

/// The `backup:<target>` jobs of a volume: target -> the job.
fn backup_jobs<'a>(jobs: &[&'a JobView]) -> BTreeMap<String, &'a JobView> {
    jobs.iter()
        .filter(|j| j.active)
        .filter_map(|j| match Action::parse(&j.action) {
            Ok(Action::Backup { target }) => Some((target, *j)),
            _ => None,
        })
        .collect()
}

/// A volume's backups, one entry per target that has a record of it or a
/// job for it.
pub fn of_volume(
    records: &BTreeMap<String, Record>,
    name: &str,
    jobs: &[&JobView],
    now: DateTime<Utc>,
) -> Vec<BackupStatus> {
    let jobs = backup_jobs(jobs);
    let mut targets: Vec<&String> = records
        .iter()
        .filter(|(_, r)| r.volumes.contains_key(name))
        .map(|(t, _)| t)
        .chain(jobs.keys())
        .collect();
    targets.sort();
    targets.dedup();
    targets
        .into_iter()
        .map(|target| {
            let record = records.get(target);
            let mine = record.and_then(|r| r.volumes.get(name));
            let last = mine.and_then(|m| m.last.as_ref());
            let time = last.and_then(|l| DateTime::parse_from_rfc3339(&l.time).ok());
            let check = record.and_then(|r| r.check.as_ref());
            BackupStatus {
                target: target.clone(),
                snapshot: last.map(|l| l.snapshot.clone()),
                id: last.map(|l| l.id.clone()),
                time: last.map(|l| l.time.clone()),
                age_seconds: time.map(|t| seconds_since(t.with_timezone(&Utc), now)),
                bytes: last.map(|l| l.bytes),
                timer: jobs.get(target).map(|j| j.timer.clone()),
                last_error: mine
                    .and_then(|m| m.error.as_ref())
                    .map(|(at, e)| format!("{at}: {e}")),
                last_check: check.map(|c| {
                    if c.ok {
                        format!("ok at {}", c.time)
                    } else {
                        format!("failed at {}: {}", c.time, c.detail)
                    }
                }),
                last_check_ok: check.map(|c| c.ok),
            }
        })
        .collect()
}

/// A backup older than twice its job's period, or none though its job
/// ran.
pub fn problems(volume: &VolumeStatus, jobs: &[&JobView], now: DateTime<Utc>) -> Vec<Problem> {
    let jobs = backup_jobs(jobs);
    let mut out = Vec::new();
    for b in &volume.backups {
        let (Some(timer), Some(job)) = (&b.timer, jobs.get(&b.target)) else {
            continue;
        };
        let Some(period) = period(timer, now) else {
            continue;
        };
        let message = match b.age_seconds {
            Some(age) if age > 2 * period.num_seconds() => format!(
                "the last backup to {} is {} old (scheduled every {})",
                b.target,
                human_duration(age),
                human_duration(period.num_seconds())
            ),
            None if job.last_run.is_some() => format!("never backed up to {}", b.target),
            _ => continue,
        };
        out.push(Problem {
            kind: ProblemKind::BackupLate,
            volume: Some(volume.name.clone()),
            peer: None,
            message,
        });
    }
    out
}

/// A target whose last check failed.
pub fn check_problems(records: &BTreeMap<String, Record>) -> Vec<Problem> {
    records
        .iter()
        .filter_map(|(target, r)| {
            let c = r.check.as_ref().filter(|c| !c.ok)?;
            Some(Problem {
                kind: ProblemKind::BackupCheckFailed,
                volume: None,
                peer: None,
                message: format!(
                    "the check of backup target {target} at {} failed: {}",
                    c.time, c.detail
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::record::{Done, VolumeRecord};

    fn job(action: &str, timer: &str, ran: bool) -> JobView {
        JobView {
            name: "db".into(),
            action: action.into(),
            timer: timer.into(),
            active: true,
            next_run: None,
            last_run: ran.then(Utc::now),
            last_result: None,
            last_ok: None,
            last_duration_ms: None,
            running: false,
            skips: 0,
            ignored_here: false,
        }
    }

    fn volume(backups: Vec<BackupStatus>) -> VolumeStatus {
        serde_json::from_value::<VolumeStatus>(serde_json::json!({
            "Name": "db", "Snapshots": 0
        }))
        .map(|mut v| {
            v.backups = backups;
            v
        })
        .unwrap()
    }

    #[test]
    fn late_backups_and_failed_checks_are_problems() {
        let now = Utc::now();
        let made = |hours: i64| Done {
            snapshot: "db@x".into(),
            id: "abc".into(),
            time: (now - chrono::Duration::hours(hours)).to_rfc3339(),
            bytes: 10,
            added: 10,
            repository: None,
        };
        let mut records = BTreeMap::new();
        for (target, hours) in [("fresh", 1), ("stale", 3)] {
            let mut r = Record::default();
            r.volumes.insert(
                "db".into(),
                VolumeRecord {
                    last: Some(made(hours)),
                    error: None,
                },
            );
            records.insert(target.to_string(), r);
        }
        let jobs = [
            job("backup:fresh", "60", true),
            job("backup:stale", "60", true),
            job("backup:never", "60", true),
            job("backup:new", "60", false),
        ];
        let refs: Vec<&JobView> = jobs.iter().collect();
        let list = of_volume(&records, "db", &refs, now);
        let names: Vec<&str> = list.iter().map(|b| b.target.as_str()).collect();
        assert_eq!(names, ["fresh", "never", "new", "stale"]);
        assert_eq!(list[0].bytes, Some(10));
        assert!(list[0].age_seconds.unwrap() >= 3600);
        let problems = problems(&volume(list), &refs, now);
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(problems.len(), 2, "{messages:?}");
        assert!(
            messages[0].contains("never backed up to never"),
            "{messages:?}"
        );
        assert!(
            messages[1].contains("the last backup to stale is"),
            "{messages:?}"
        );
        assert!(problems.iter().all(|p| p.kind == ProblemKind::BackupLate));

        assert!(check_problems(&records).is_empty());
        records.get_mut("fresh").unwrap().check = Some(crate::backup::record::CheckRecord {
            time: now.to_rfc3339(),
            ok: false,
            detail: "pack abc: not referenced".into(),
        });
        let failed = check_problems(&records);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].kind, ProblemKind::BackupCheckFailed);
        assert!(failed[0].message.contains("not referenced"));
    }
}
