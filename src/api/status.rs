//! `Status` (no request body): what `buttervolume status` shows. Times
//! are RFC 3339 in UTC; ages and lags are whole seconds at `Now`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatusReply {
    /// When the status was taken: every age is counted from it.
    #[serde(with = "time")]
    pub now: DateTime<Utc>,
    /// Worst first.
    #[serde(default)]
    pub problems: Vec<Problem>,
    /// Volumes with a problem first, then by name.
    #[serde(default)]
    pub volumes: Vec<VolumeStatus>,
    /// The schedule is globally paused: no job runs.
    #[serde(default)]
    pub schedule_paused: bool,
    /// Cluster mode's figures ([`crate::cluster`]); absent in pair mode.
    #[serde(rename = "Cluster", default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<super::cluster::ClusterStatus>,
}

/// Something an operator should look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Problem {
    pub kind: ProblemKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    pub message: String,
}

/// The kinds of problem, worst first (the order `Problems` is sorted in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// Cluster mode made a volume read-only: this node lost etcd and its
    /// peer, or another node took the volume over.
    Fenced,
    /// Cluster mode keeps what a fenced node wrote after a takeover as a
    /// snapshot: an operator decides what to do with it.
    Diverged,
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
    pub const ALL: [ProblemKind; 14] = [
        ProblemKind::Fenced,
        ProblemKind::Diverged,
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
            ProblemKind::Fenced => "fenced",
            ProblemKind::Diverged => "diverged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeStatus {
    pub name: String,
    /// Allocated bytes as `du` counts them, from the last background
    /// measurement (`None`: not measured yet).
    #[serde(default)]
    pub size_bytes: Option<u64>,
    #[serde(default, with = "time_opt")]
    pub size_measured_at: Option<DateTime<Utc>>,
    /// The volume changed since that measurement (a new one is on its
    /// way).
    #[serde(default)]
    pub size_stale: bool,
    /// Snapshots of the volume here (sent markers not counted).
    pub snapshots: usize,
    /// The newest snapshot in btrfs creation order.
    #[serde(default)]
    pub newest_snapshot: Option<String>,
    /// When it was created here.
    #[serde(default, with = "time_opt")]
    pub newest_snapshot_created: Option<DateTime<Utc>>,
    #[serde(default)]
    pub newest_snapshot_age_seconds: Option<i64>,
    #[serde(default)]
    pub peers: Vec<PeerStatus>,
    /// Follow-the-container state: `off`, `on <peer>` with whether a
    /// container uses it here, and the last follow failure if any.
    #[serde(default)]
    pub follow: Option<String>,
    #[serde(default)]
    pub jobs: Vec<JobStatus>,
    /// Actions of this volume's jobs running now.
    #[serde(default)]
    pub running_jobs: Vec<String>,
    /// The most recent failure of the volume: a job's (`<action>:
    /// <result>`) or a send's (`send to <peer>: <error>`).
    #[serde(default)]
    pub last_error: Option<String>,
    /// Its backups per target ([`crate::backup`]).
    #[serde(default)]
    pub backups: Vec<super::backup::BackupStatus>,
    /// Cluster mode: its owner as this node last knew it (`<node> epoch
    /// <n>, in use|released`); absent in pair mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A peer this volume is replicated to: one with a sent marker
/// (`<volume>@<ts>@<peer>`, recorded after each successful send, or
/// receive, with it), or one a `replicate:<peer>` job names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PeerStatus {
    pub host: String,
    /// The newest snapshot the peer is known to hold (the newest
    /// marker's snapshot); `None`: never sent.
    #[serde(default)]
    pub sent_snapshot: Option<String>,
    /// When that marker was recorded: the last successful replication.
    #[serde(default, with = "time_opt")]
    pub last_success: Option<DateTime<Utc>>,
    /// How long this node has held a snapshot the peer lacks: 0 when
    /// the peer holds the newest snapshot, else the age of the oldest
    /// snapshot created after the one it holds (of the oldest
    /// snapshot, when it holds none).
    pub lag_seconds: i64,
    /// Snapshots created here after the one the peer holds.
    pub unsent_snapshots: usize,
    /// The timer of the volume's `replicate:<peer>` job, if any.
    #[serde(default)]
    pub replicate_timer: Option<String>,
    /// The last send of the volume to the peer failed (since the
    /// daemon started, until one succeeds): why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    #[serde(default, with = "time_opt", skip_serializing_if = "Option::is_none")]
    pub last_failure_at: Option<DateTime<Utc>>,
}

/// One scheduled job of the volume, as `Schedule.List` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobStatus {
    pub action: String,
    pub timer: String,
    pub active: bool,
    pub running: bool,
    #[serde(default, with = "time_opt")]
    pub last_run: Option<DateTime<Utc>>,
    #[serde(default, with = "time_opt")]
    pub next_run: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_ok: Option<bool>,
    #[serde(default)]
    pub last_result: Option<String>,
    #[serde(default)]
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

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::rfc3339(t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| super::parse(&s))
            .transpose()
    }
}
