//! The control API's wire format, shared by the server and the CLI: the
//! endpoint paths and the JSON request and reply bodies, field names as
//! buttervolume 3.13 spells them (capitalized), so both ends read one
//! definition. Docker's own `VolumeDriver` calls are here too, since the
//! server decodes them the same way.
//!
//! Every reply also carries `Err` (empty on success), added once by the
//! server; the CLI turns a non-empty `Err` into its failure.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize};

pub mod backup;

/// Endpoint paths.
pub mod path {
    pub const SNAPSHOT: &str = "/VolumeDriver.Snapshot";
    pub const SNAPSHOT_LIST: &str = "/VolumeDriver.Snapshot.List";
    pub const SNAPSHOT_REMOVE: &str = "/VolumeDriver.Snapshot.Remove";
    pub const SNAPSHOT_RESTORE: &str = "/VolumeDriver.Snapshot.Restore";
    pub const SNAPSHOT_SEND: &str = "/VolumeDriver.Snapshot.Send";
    pub const SNAPSHOT_RECEIVE: &str = "/VolumeDriver.Snapshot.Receive";
    pub const REPLICATE: &str = "/VolumeDriver.Replicate";
    pub const HANDOVER: &str = "/VolumeDriver.Handover";
    pub const CLONE: &str = "/VolumeDriver.Clone";
    pub const PURGE: &str = "/VolumeDriver.Snapshots.Purge";
    pub const INSPECT: &str = "/VolumeDriver.Inspect";
    pub const SYNC: &str = "/VolumeDriver.Volume.Sync";
    pub const SCHEDULE: &str = "/VolumeDriver.Schedule";
    pub const SCHEDULE_LIST: &str = "/VolumeDriver.Schedule.List";
    pub const SCHEDULE_PAUSE: &str = "/VolumeDriver.Schedule.Pause";
    pub const SCHEDULE_RESUME: &str = "/VolumeDriver.Schedule.Resume";
    pub const STATUS: &str = "/VolumeDriver.Status";
    /// The sends running now (GET, no body).
    pub const TRANSFERS: &str = "/VolumeDriver.Transfers";
}

/// `{"Name": ...}`: a volume or a snapshot, depending on the endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NameRequest {
    #[serde(rename = "Name")]
    pub name: String,
}

/// `Snapshot`: `IfChanged` skips a volume unchanged since its newest
/// snapshot (the reply's `Created` says which happened).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRequest {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "IfChanged", default, skip_serializing_if = "is_false")]
    pub if_changed: bool,
}

/// Docker's `VolumeDriver.Create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateRequest {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Opts", default)]
    pub opts: Option<HashMap<String, String>>,
}

/// Docker's `VolumeDriver.Mount` and `Unmount`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountRequest {
    #[serde(rename = "Name")]
    pub name: String,
    /// Docker's mount ID. Docker always sends one; raw-API clients (the
    /// reference's own tests among them) may not.
    #[serde(rename = "ID", default)]
    pub id: Option<String>,
}

impl MountRequest {
    /// The mount ID when there is one: a Mount without it is counted
    /// nowhere (the reference keeps no mount state), so it never holds
    /// the volume against Remove.
    pub fn docker_id(&self) -> Option<&str> {
        self.id.as_deref().filter(|id| !id.is_empty())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreRequest {
    /// A snapshot, or a volume meaning its newest snapshot.
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Target", default)]
    pub target: Option<String>,
    #[serde(rename = "Force", default, skip_serializing_if = "is_false")]
    pub force: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CloneRequest {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Target", default)]
    pub target: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PurgeRequest {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Pattern")]
    pub pattern: String,
    #[serde(rename = "Dryrun", default)]
    pub dry_run: bool,
    /// Add `Explain` to the reply: every snapshot's fate and reason.
    #[serde(rename = "Explain", default, skip_serializing_if = "is_false")]
    pub explain: bool,
    /// Evaluate the pattern as of this time (DTFORMAT); only with Dryrun.
    #[serde(rename = "At", default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendRequest {
    /// The snapshot.
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Host")]
    pub host: String,
    #[serde(rename = "Test", default, skip_serializing_if = "is_false")]
    pub test: bool,
    /// zstd on the wire (default: SEND_COMPRESSION).
    #[serde(rename = "Compress", default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<bool>,
    /// MiB/s (default: SEND_BWLIMIT; 0: none).
    #[serde(rename = "BwLimit", default, skip_serializing_if = "Option::is_none")]
    pub bwlimit: Option<u64>,
    /// Ask for the reply's `Summary` ([`SummaryReply`]); without it the
    /// reply is the reference's `{"Err": ""}`.
    #[serde(rename = "Detail", default, skip_serializing_if = "is_false")]
    pub detail: bool,
}

/// `Snapshot.Receive` and `Replicate`: upstream's shape, `Name` is the
/// volume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerVolumeRequest {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Host")]
    pub host: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncRequest {
    #[serde(rename = "Volumes")]
    pub volumes: Vec<String>,
    #[serde(rename = "Hosts")]
    pub hosts: Vec<String>,
    #[serde(rename = "Test", default, skip_serializing_if = "is_false")]
    pub test: bool,
}

/// `Schedule.List`'s request body (the reference sends none): `Detail`
/// adds each job's run history and the `Invalid` lines to the reply, which
/// otherwise has the reference's four fields per job and nothing else.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScheduleListRequest {
    #[serde(rename = "Detail", default, skip_serializing_if = "is_false")]
    pub detail: bool,
}

/// `{Name, Action, Timer}`. The reference does `str(req["Timer"])`, so
/// Timer may be a JSON number as well as a string.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleRequest {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Timer", deserialize_with = "string_or_number")]
    pub timer: String,
}

/// `{"Snapshot": name}` (Snapshot), with `Summary` (Receive, Replicate).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SnapshotReply {
    #[serde(rename = "Snapshot", default)]
    pub snapshot: String,
    #[serde(rename = "Summary", default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// `Snapshot` only: false when `IfChanged` found nothing new and
    /// `Snapshot` names the newest existing one.
    #[serde(rename = "Created", default, skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SnapshotsReply {
    #[serde(rename = "Snapshots", default)]
    pub snapshots: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestoreReply {
    /// The snapshot of what the target held, when it existed.
    #[serde(
        rename = "VolumeBackup",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub volume_backup: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CloneReply {
    #[serde(rename = "VolumeCloned", default)]
    pub volume_cloned: String,
}

/// 3.13 answers `{"Err": ""}`: `Purged` only for a dry run, `Explain`
/// only when asked.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PurgeReply {
    #[serde(rename = "Purged", default, skip_serializing_if = "Option::is_none")]
    pub purged: Option<Vec<String>>,
    #[serde(rename = "Explain", default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<Vec<PurgeExplained>>,
}

/// One snapshot's fate in a purge ([`crate::purge::explain`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeExplained {
    #[serde(rename = "Snapshot")]
    pub snapshot: String,
    #[serde(rename = "Keep")]
    pub keep: bool,
    #[serde(rename = "Reason")]
    pub reason: String,
    /// What the pattern alone decides (differs from `Keep` only for a
    /// protected send parent or marker).
    #[serde(rename = "PatternKeeps")]
    pub pattern_keeps: bool,
}

/// `Handover` (request: [`PeerVolumeRequest`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HandoverReply {
    /// `presynced` (the app still runs here: stop it and call again) or
    /// `handed-over` (the final state is on the peer).
    #[serde(rename = "Phase")]
    pub phase: String,
    #[serde(rename = "Snapshot")]
    pub snapshot: String,
    #[serde(rename = "Rounds")]
    pub rounds: usize,
    /// Stream bytes moved by this call.
    #[serde(rename = "Bytes")]
    pub bytes: u64,
    /// The final snapshot and send: the downtime-critical part.
    #[serde(
        rename = "CriticalSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub critical_seconds: Option<f64>,
}

/// `Snapshot.Send` with `Detail`: one line for the operator.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SummaryReply {
    #[serde(rename = "Summary", default)]
    pub summary: String,
}

/// `Transfers`: the sends running now on the daemon, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TransfersReply {
    #[serde(rename = "Transfers", default)]
    pub transfers: Vec<TransferStatus>,
}

/// One send in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferStatus {
    #[serde(rename = "Snapshot")]
    pub snapshot: String,
    /// As the send was asked for (`user@host` included).
    #[serde(rename = "Host")]
    pub host: String,
    /// RFC 3339, UTC.
    #[serde(rename = "StartedAt")]
    pub started_at: String,
    #[serde(rename = "ElapsedSeconds")]
    pub elapsed_seconds: f64,
    /// `true`: a full send, `false`: incremental, absent: the peer is
    /// still being asked.
    #[serde(rename = "Full", default, skip_serializing_if = "Option::is_none")]
    pub full: Option<bool>,
    /// Stream bytes read from the send so far (before zstd).
    #[serde(rename = "Bytes")]
    pub bytes: u64,
    /// Bytes written to the SSH channel so far (updated every 0.5 s).
    #[serde(rename = "WireBytes")]
    pub wire_bytes: u64,
    /// What the whole stream should come to, when it can be told: a full
    /// send, from the volume's last size measurement (`status`'s). Absent
    /// for an incremental send: nothing measures a difference up front.
    #[serde(
        rename = "EstimatedBytes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub estimated_bytes: Option<u64>,
}

pub use status::{JobStatus, PeerStatus, Problem, ProblemKind, StatusReply, VolumeStatus};

/// `Status` (no request body): what `buttervolume status` shows. Times
/// are RFC 3339 in UTC; ages and lags are whole seconds at `Now`.
pub mod status {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct StatusReply {
        /// When the status was taken: every age is counted from it.
        #[serde(rename = "Now", with = "time")]
        pub now: DateTime<Utc>,
        /// Worst first.
        #[serde(rename = "Problems", default)]
        pub problems: Vec<Problem>,
        /// Volumes with a problem first, then by name.
        #[serde(rename = "Volumes", default)]
        pub volumes: Vec<VolumeStatus>,
        /// The schedule is globally paused: no job runs.
        #[serde(rename = "SchedulePaused", default)]
        pub schedule_paused: bool,
    }

    /// Something an operator should look at.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Problem {
        #[serde(rename = "Kind")]
        pub kind: ProblemKind,
        #[serde(rename = "Volume", default, skip_serializing_if = "Option::is_none")]
        pub volume: Option<String>,
        #[serde(rename = "Peer", default, skip_serializing_if = "Option::is_none")]
        pub peer: Option<String>,
        #[serde(rename = "Message")]
        pub message: String,
    }

    /// The kinds of problem, worst first (the order `Problems` is sorted in).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum ProblemKind {
        /// A follow step failed (a refused first Mount, a final send that did
        /// not reach the peer): the app's state is not where it should be.
        FollowFailed,
        /// A scheduled job whose last run failed.
        JobFailed,
        /// The last send of the volume to a peer failed (a `send`, the
        /// deploy handler's; a failing replicate job shows as
        /// `JobFailed`): cleared by the next send to it that succeeds.
        SendFailed,
        /// `replicate:<peer>` is scheduled and no send to the peer ever
        /// succeeded (no sent marker).
        NeverSent,
        /// A peer's lag is more than twice its replicate job's period.
        PeerLagging,
        /// A volume's last backup to a target is older than twice its
        /// `backup:<target>` job's period (or it has none though the job
        /// ran).
        BackupLate,
        /// The last `check-backups` of a target failed.
        BackupCheckFailed,
        /// Jobs are scheduled for a volume that does not exist here.
        MissingVolume,
        /// The whole schedule is paused.
        SchedulePaused,
        /// schedule.csv could not be read.
        ScheduleUnreadable,
        /// A schedule.csv line the scheduler skips.
        InvalidScheduleLine,
        /// A paired key installed without `--peer`: it reads every volume
        /// here ([`crate::replication::scope`]).
        UnscopedKey,
    }

    impl ProblemKind {
        pub const ALL: [ProblemKind; 12] = [
            ProblemKind::FollowFailed,
            ProblemKind::JobFailed,
            ProblemKind::SendFailed,
            ProblemKind::NeverSent,
            ProblemKind::PeerLagging,
            ProblemKind::BackupLate,
            ProblemKind::BackupCheckFailed,
            ProblemKind::MissingVolume,
            ProblemKind::SchedulePaused,
            ProblemKind::ScheduleUnreadable,
            ProblemKind::InvalidScheduleLine,
            ProblemKind::UnscopedKey,
        ];

        /// The kind as JSON spells it (`job-failed`, ...).
        pub fn as_str(self) -> &'static str {
            match self {
                ProblemKind::FollowFailed => "follow-failed",
                ProblemKind::JobFailed => "job-failed",
                ProblemKind::SendFailed => "send-failed",
                ProblemKind::NeverSent => "never-sent",
                ProblemKind::PeerLagging => "peer-lagging",
                ProblemKind::BackupLate => "backup-late",
                ProblemKind::BackupCheckFailed => "backup-check-failed",
                ProblemKind::MissingVolume => "missing-volume",
                ProblemKind::SchedulePaused => "schedule-paused",
                ProblemKind::ScheduleUnreadable => "schedule-unreadable",
                ProblemKind::InvalidScheduleLine => "invalid-schedule-line",
                ProblemKind::UnscopedKey => "unscoped-key",
            }
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct VolumeStatus {
        #[serde(rename = "Name")]
        pub name: String,
        /// Allocated bytes as `du` counts them, from the last background
        /// measurement (`None`: not measured yet).
        #[serde(rename = "SizeBytes", default)]
        pub size_bytes: Option<u64>,
        #[serde(rename = "SizeMeasuredAt", default, with = "time_opt")]
        pub size_measured_at: Option<DateTime<Utc>>,
        /// The volume changed since that measurement (a new one is on its
        /// way).
        #[serde(rename = "SizeStale", default)]
        pub size_stale: bool,
        /// Snapshots of the volume here (sent markers not counted).
        #[serde(rename = "Snapshots")]
        pub snapshots: usize,
        /// The newest snapshot in btrfs creation order.
        #[serde(rename = "NewestSnapshot", default)]
        pub newest_snapshot: Option<String>,
        /// When it was created here.
        #[serde(rename = "NewestSnapshotCreated", default, with = "time_opt")]
        pub newest_snapshot_created: Option<DateTime<Utc>>,
        #[serde(rename = "NewestSnapshotAgeSeconds", default)]
        pub newest_snapshot_age_seconds: Option<i64>,
        #[serde(rename = "Peers", default)]
        pub peers: Vec<PeerStatus>,
        /// Follow-the-container state: `off`, `on <peer>` with whether a
        /// container uses it here, and the last follow failure if any.
        #[serde(rename = "Follow", default)]
        pub follow: Option<String>,
        #[serde(rename = "Jobs", default)]
        pub jobs: Vec<JobStatus>,
        /// Actions of this volume's jobs running now.
        #[serde(rename = "RunningJobs", default)]
        pub running_jobs: Vec<String>,
        /// The most recent failure of the volume: a job's (`<action>:
        /// <result>`) or a send's (`send to <peer>: <error>`).
        #[serde(rename = "LastError", default)]
        pub last_error: Option<String>,
        /// Its backups per target ([`crate::backup`]).
        #[serde(rename = "Backups", default)]
        pub backups: Vec<super::backup::BackupStatus>,
    }

    /// A peer this volume is replicated to: one with a sent marker
    /// (`<volume>@<ts>@<peer>`, recorded after each successful send, or
    /// receive, with it), or one a `replicate:<peer>` job names.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PeerStatus {
        #[serde(rename = "Host")]
        pub host: String,
        /// The newest snapshot the peer is known to hold (the newest
        /// marker's snapshot); `None`: never sent.
        #[serde(rename = "SentSnapshot", default)]
        pub sent_snapshot: Option<String>,
        /// When that marker was recorded: the last successful replication.
        #[serde(rename = "LastSuccess", default, with = "time_opt")]
        pub last_success: Option<DateTime<Utc>>,
        /// How long this node has held a snapshot the peer lacks: 0 when
        /// the peer holds the newest snapshot, else the age of the oldest
        /// snapshot created after the one it holds (of the oldest
        /// snapshot, when it holds none).
        #[serde(rename = "LagSeconds")]
        pub lag_seconds: i64,
        /// Snapshots created here after the one the peer holds.
        #[serde(rename = "UnsentSnapshots")]
        pub unsent_snapshots: usize,
        /// The timer of the volume's `replicate:<peer>` job, if any.
        #[serde(rename = "ReplicateTimer", default)]
        pub replicate_timer: Option<String>,
        /// The last send of the volume to the peer failed (since the
        /// daemon started, until one succeeds): why.
        #[serde(
            rename = "LastFailure",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        pub last_failure: Option<String>,
        #[serde(
            rename = "LastFailureAt",
            default,
            with = "time_opt",
            skip_serializing_if = "Option::is_none"
        )]
        pub last_failure_at: Option<DateTime<Utc>>,
    }

    /// One scheduled job of the volume, as `Schedule.List` shows it.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct JobStatus {
        #[serde(rename = "Action")]
        pub action: String,
        #[serde(rename = "Timer")]
        pub timer: String,
        #[serde(rename = "Active")]
        pub active: bool,
        #[serde(rename = "Running")]
        pub running: bool,
        #[serde(rename = "LastRun", default, with = "time_opt")]
        pub last_run: Option<DateTime<Utc>>,
        #[serde(rename = "NextRun", default, with = "time_opt")]
        pub next_run: Option<DateTime<Utc>>,
        #[serde(rename = "LastOk", default)]
        pub last_ok: Option<bool>,
        #[serde(rename = "LastResult", default)]
        pub last_result: Option<String>,
        #[serde(rename = "LastDurationMs", default)]
        pub last_duration_ms: Option<u64>,
    }

    fn rfc3339(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    fn parse<E: serde::de::Error>(s: &str) -> Result<DateTime<Utc>, E> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(E::custom)
    }

    mod time {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&super::rfc3339(t))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
            super::parse(&String::deserialize(d)?)
        }
    }

    mod time_opt {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&super::rfc3339(t)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| super::parse(&s))
                .transpose()
        }
    }
}

fn is_false(b: &bool) -> bool {
    !b
}

fn string_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        _ => Err(serde::de::Error::custom(
            "Timer must be a string or a number",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_keep_the_reference_shapes() {
        let restore = RestoreRequest {
            name: "db".into(),
            target: None,
            force: false,
        };
        assert_eq!(
            serde_json::to_value(&restore).unwrap(),
            json!({"Name": "db", "Target": null})
        );
        let send = SendRequest {
            name: "db@x".into(),
            host: "h".into(),
            test: false,
            compress: None,
            bwlimit: Some(5),
            detail: false,
        };
        assert_eq!(
            serde_json::to_value(&send).unwrap(),
            json!({"Name": "db@x", "Host": "h", "BwLimit": 5})
        );
        let timer: ScheduleRequest =
            serde_json::from_value(json!({"Name": "db", "Action": "snapshot", "Timer": 60}))
                .unwrap();
        assert_eq!(timer.timer, "60");
        let err = serde_json::from_value::<ScheduleRequest>(
            json!({"Name": "db", "Action": "snapshot", "Timer": []}),
        )
        .unwrap_err();
        assert!(err
            .to_string()
            .contains("Timer must be a string or a number"));
    }
}
