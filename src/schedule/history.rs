//! The run history of every job: when it was first seen, last run and last
//! skipped, its last result and duration.
//!
//! It is what lets a restart resume the schedule instead of replaying it:
//! the reference kept this in memory only, so every start fired every job at
//! once. It lives beside schedule.csv as `<SCHEDULE>.state.json` (e.g.
//! `/etc/buttervolume/schedule.csv.state.json`, i.e. the persistent
//! `/var/lib/buttervolume/config/` of the managed plugin): the history
//! describes that file's jobs, so it moves, is backed up and is reset
//! together with it. It is replaced atomically ([`crate::fsutil::write_atomic`]),
//! so a crash leaves the previous or the new version, never a torn one; an
//! unreadable history is reported and ignored (jobs are then due as on a
//! first start), never fatal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::JobKey;

/// Format version, bumped on incompatible changes.
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid scheduler history: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The history of one job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// When the scheduler first saw the job (cron jobs wait for their first
    /// occurrence after it).
    #[serde(default, with = "time_opt", skip_serializing_if = "Option::is_none")]
    pub seen: Option<DateTime<Utc>>,
    /// When the job was last dispatched.
    #[serde(default, with = "time_opt", skip_serializing_if = "Option::is_none")]
    pub last_run: Option<DateTime<Utc>>,
    /// `ok: ...` or `error: ...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_duration_ms: Option<u64>,
    /// When an occurrence was last skipped because the previous run was
    /// still going; the skipped occurrence counts as consumed.
    #[serde(default, with = "time_opt", skip_serializing_if = "Option::is_none")]
    pub last_skipped: Option<DateTime<Utc>>,
    /// How many occurrences were skipped, ever.
    #[serde(default)]
    pub skips: u64,
}

impl RunRecord {
    /// When the job's previous occurrence was consumed: its next occurrence
    /// is counted from there.
    pub fn base(&self) -> Option<DateTime<Utc>> {
        self.last_run.max(self.last_skipped)
    }
}

#[derive(Serialize, Deserialize)]
struct HistoryFile {
    version: u32,
    jobs: Vec<StoredJob>,
}

#[derive(Serialize, Deserialize)]
struct StoredJob {
    name: String,
    action: String,
    #[serde(flatten)]
    record: RunRecord,
}

/// The history file of a schedule file: `<schedule>.state.json`.
pub fn path_for(schedule: &Path) -> PathBuf {
    let mut name = schedule.as_os_str().to_owned();
    name.push(".state.json");
    name.into()
}

/// Reads a history; a missing file is an empty history.
pub fn load(path: &Path) -> Result<HashMap<JobKey, RunRecord>, HistoryError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(source) => {
            return Err(HistoryError::Read {
                path: path.into(),
                source,
            })
        }
    };
    let file: HistoryFile =
        serde_json::from_slice(&bytes).map_err(|source| HistoryError::Corrupt {
            path: path.into(),
            source,
        })?;
    Ok(file
        .jobs
        .into_iter()
        .map(|j| ((j.name, j.action), j.record))
        .collect())
}

/// Replaces the history atomically. Jobs are sorted so the file is stable
/// and diffable.
pub fn save<'a>(
    path: &Path,
    records: impl IntoIterator<Item = (&'a JobKey, &'a RunRecord)>,
) -> Result<(), HistoryError> {
    let mut jobs: Vec<StoredJob> = records
        .into_iter()
        .map(|((name, action), record)| StoredJob {
            name: name.clone(),
            action: action.clone(),
            record: record.clone(),
        })
        .collect();
    jobs.sort_by(|a, b| (&a.name, &a.action).cmp(&(&b.name, &b.action)));
    let file = HistoryFile {
        version: VERSION,
        jobs,
    };
    let write_err = |source| HistoryError::Write {
        path: path.into(),
        source,
    };
    let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| write_err(e.into()))?;
    bytes.push(b'\n');
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    crate::fsutil::write_atomic(path, &bytes).map_err(write_err)
}

/// RFC 3339 timestamps (chrono's serde support is not enabled).
mod time_opt {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| {
                DateTime::parse_from_rfc3339(&s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("schedule.csv"));
        assert_eq!(path.file_name().unwrap(), "schedule.csv.state.json");
        assert!(load(&path).unwrap().is_empty());
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let record = RunRecord {
            seen: Some(t),
            last_run: Some(t),
            last_result: Some("ok: db@x".into()),
            last_ok: Some(true),
            last_duration_ms: Some(12),
            last_skipped: None,
            skips: 3,
        };
        let key = ("db".to_string(), "snapshot".to_string());
        save(&path, [(&key, &record)]).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded[&key], record);
        assert_eq!(record.base(), Some(t));
    }

    #[test]
    fn corrupt_history_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.json");
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(load(&path), Err(HistoryError::Corrupt { .. })));
    }
}
