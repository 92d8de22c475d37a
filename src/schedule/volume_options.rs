//! Volume options that schedule: `docker volume create -o
//! replicate:<host>=<minutes>` (also `snapshot=<minutes>`,
//! `purge:<pattern>=<minutes>`, `synchronize:<hosts>=<minutes>`), so a
//! compose file's `driver_opts` or Swarm's `--volume-opt` sets up a
//! volume's jobs with the volume. A key that names an action is a schedule
//! option; every other key is left to the volume's own options (which
//! still refuse unknown keys). Each line is written only if the volume has
//! no line for that action yet: re-creating a volume never changes a
//! schedule an operator edited since.

use std::collections::HashMap;

use super::{Action, ActionError, TimerCommand, TimerError};

/// A job asked for by a volume option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeJob {
    pub action: String,
    pub timer: String,
}

/// Each text starts with the reference master's text for the same error
/// (its `Create` judges these options too), then says what is ours: cron
/// timers, the CLI to unschedule.
#[derive(Debug, thiserror::Error)]
pub enum VolumeOptionError {
    #[error("Unknown option '{key}'. Options are copyonwrite, compression, nonmigrable, follow, or an action to schedule on the volume with a number of minutes as its value: {source}")]
    Action {
        key: String,
        value: String,
        source: ActionError,
    },
    #[error("Invalid value '{value}' for option '{key}': it must be a number of minutes (or cron:<expr>): {source}")]
    Timer {
        key: String,
        value: String,
        source: TimerError,
    },
    #[error("Invalid value '{value}' for option '{key}': it must be a number of minutes (or cron:<expr>); unschedule with `buttervolume schedule {key} 0 <volume>`")]
    NotATimer { key: String, value: String },
    #[error("Schedule is globally paused, so nothing can be scheduled on {volume}: resume it first (`buttervolume scheduled resume`), or create the volume without the options that schedule (snapshot, replicate:, purge:, synchronize:)")]
    Paused { volume: String },
}

/// True for keys that name a job (`snapshot`, `replicate:...`, ...).
fn is_job_key(key: &str) -> bool {
    key == "snapshot"
        || [
            "replicate:",
            "purge:",
            "synchronize:",
            "backup:",
            "check-backups:",
        ]
        .iter()
        .any(|prefix| key.starts_with(prefix))
}

/// Splits Docker's options into the volume's own and the jobs they ask
/// for (sorted by action, so lines are written in a stable order). Every
/// job is validated here, before anything is created.
pub fn split(
    opts: &HashMap<String, String>,
) -> Result<(HashMap<String, String>, Vec<VolumeJob>), VolumeOptionError> {
    let mut volume = HashMap::new();
    let mut jobs = Vec::new();
    for (key, value) in opts {
        if !is_job_key(key) {
            volume.insert(key.clone(), value.clone());
            continue;
        }
        Action::parse(key).map_err(|source| VolumeOptionError::Action {
            key: key.clone(),
            value: value.clone(),
            source,
        })?;
        let timer = value.trim();
        match TimerCommand::parse(timer) {
            Ok(TimerCommand::Set(_)) => jobs.push(VolumeJob {
                action: key.clone(),
                timer: timer.to_string(),
            }),
            Ok(_) => {
                return Err(VolumeOptionError::NotATimer {
                    key: key.clone(),
                    value: value.clone(),
                })
            }
            Err(source) => {
                return Err(VolumeOptionError::Timer {
                    key: key.clone(),
                    value: value.clone(),
                    source,
                })
            }
        }
    }
    jobs.sort_by(|a, b| a.action.cmp(&b.action));
    Ok((volume, jobs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn jobs_are_split_from_volume_options() {
        let (volume, jobs) = split(&opts(&[
            ("copyonwrite", "false"),
            ("replicate:10.0.0.2", "60"),
            ("snapshot", " 30 "),
            ("purge:1h:1d", "cron:0 * * * *"),
        ]))
        .unwrap();
        assert_eq!(volume, opts(&[("copyonwrite", "false")]));
        let actions: Vec<(&str, &str)> = jobs
            .iter()
            .map(|j| (j.action.as_str(), j.timer.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("purge:1h:1d", "cron:0 * * * *"),
                ("replicate:10.0.0.2", "60"),
                ("snapshot", "30")
            ]
        );
        // Not a job key: the volume's options judge it.
        let (volume, jobs) = split(&opts(&[("size", "1G")])).unwrap();
        assert!(jobs.is_empty() && volume.contains_key("size"));
    }

    #[test]
    fn bad_jobs_are_refused_before_anything_is_made() {
        for (key, value, expected) in [
            (
                "replicate:[fd00::2]",
                "60",
                "Unknown option 'replicate:[fd00::2]'. Options are copyonwrite, compression",
            ),
            ("purge:1x", "60", "Unknown option 'purge:1x'. Options are"),
            (
                "snapshot",
                "0",
                "Invalid value '0' for option 'snapshot': it must be a number of minutes",
            ),
            (
                "snapshot",
                "pause",
                "Invalid value 'pause' for option 'snapshot': it must be a number of minutes",
            ),
            (
                "snapshot",
                "often",
                "Invalid value 'often' for option 'snapshot': it must be a number of minutes",
            ),
        ] {
            let err = split(&opts(&[(key, value)])).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{key}={value}: {err}");
        }
    }
}
