//! The control API's wire format, shared by the server and the CLI: the
//! endpoint paths and the JSON request and reply bodies, field names as
//! buttervolume 3.13 spells them (`rename_all = "PascalCase"`, and a
//! `rename` for the three that are not: `ID`, `Dryrun`, `BwLimit`;
//! `wire_tests` pins every type's names), so both ends read one
//! definition. Docker's own `VolumeDriver` calls are here too, since the
//! server decodes them the same way.
//!
//! Every reply also carries `Err` (empty on success), added once by the
//! server; the CLI turns a non-empty `Err` into its failure.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize};

pub mod backup;
pub mod cluster;
pub mod endpoint;
#[cfg(test)]
mod wire_tests;

/// Endpoint paths; [`endpoint::ENDPOINTS`] is the table of them all.
pub mod path {
    pub const ACTIVATE: &str = "/Plugin.Activate";
    pub const CAPABILITIES: &str = "/VolumeDriver.Capabilities";
    pub const CREATE: &str = "/VolumeDriver.Create";
    pub const REMOVE: &str = "/VolumeDriver.Remove";
    pub const MOUNT: &str = "/VolumeDriver.Mount";
    pub const UNMOUNT: &str = "/VolumeDriver.Unmount";
    pub const PATH: &str = "/VolumeDriver.Path";
    pub const GET: &str = "/VolumeDriver.Get";
    pub const LIST: &str = "/VolumeDriver.List";
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
#[serde(rename_all = "PascalCase")]
pub struct NameRequest {
    pub name: String,
}

/// `Snapshot`: `IfChanged` skips a volume unchanged since its newest
/// snapshot (the reply's `Created` says which happened).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapshotRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub if_changed: bool,
}

/// Docker's `VolumeDriver.Create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateRequest {
    pub name: String,
    #[serde(default)]
    pub opts: Option<HashMap<String, String>>,
}

/// Docker's `VolumeDriver.Mount` and `Unmount`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountRequest {
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
#[serde(rename_all = "PascalCase")]
pub struct RestoreRequest {
    /// A snapshot, or a volume meaning its newest snapshot.
    pub name: String,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CloneRequest {
    pub name: String,
    #[serde(default)]
    pub target: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PurgeRequest {
    pub name: String,
    pub pattern: String,
    #[serde(rename = "Dryrun", default)]
    pub dry_run: bool,
    /// Add `Explain` to the reply: every snapshot's fate and reason.
    #[serde(default, skip_serializing_if = "is_false")]
    pub explain: bool,
    /// Evaluate the pattern as of this time (DTFORMAT); only with Dryrun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendRequest {
    /// The snapshot.
    pub name: String,
    pub host: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub test: bool,
    /// zstd on the wire (default: SEND_COMPRESSION).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<bool>,
    /// MiB/s (default: SEND_BWLIMIT; 0: none).
    #[serde(rename = "BwLimit", default, skip_serializing_if = "Option::is_none")]
    pub bwlimit: Option<u64>,
    /// Ask for the reply's `Summary` ([`SummaryReply`]); without it the
    /// reply is the reference's `{"Err": ""}`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub detail: bool,
}

/// `Snapshot.Receive` and `Replicate`: upstream's shape, `Name` is the
/// volume.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PeerVolumeRequest {
    pub name: String,
    pub host: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SyncRequest {
    pub volumes: Vec<String>,
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub test: bool,
}

/// `Schedule.List`'s request body (the reference sends none): `Detail`
/// adds each job's run history and the `Invalid` lines to the reply, which
/// otherwise has the reference's four fields per job and nothing else.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduleListRequest {
    #[serde(default, skip_serializing_if = "is_false")]
    pub detail: bool,
}

/// `{Name, Action, Timer}`. The reference does `str(req["Timer"])`, so
/// Timer may be a JSON number as well as a string.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduleRequest {
    pub name: String,
    pub action: String,
    #[serde(deserialize_with = "string_or_number")]
    pub timer: String,
}

/// `{"Snapshot": name}` (Snapshot), with `Summary` (Receive, Replicate).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapshotReply {
    #[serde(default)]
    pub snapshot: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// `Snapshot` only: false when `IfChanged` found nothing new and
    /// `Snapshot` names the newest existing one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapshotsReply {
    #[serde(default)]
    pub snapshots: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestoreReply {
    /// The snapshot of what the target held, when it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_backup: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CloneReply {
    #[serde(default)]
    pub volume_cloned: String,
}

/// 3.13 answers `{"Err": ""}`: `Purged` only for a dry run, `Explain`
/// only when asked.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PurgeReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<Vec<PurgeExplained>>,
}

/// One snapshot's fate in a purge ([`crate::purge::explain`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PurgeExplained {
    pub snapshot: String,
    pub keep: bool,
    pub reason: String,
    /// What the pattern alone decides (differs from `Keep` only for a
    /// protected send parent or marker).
    pub pattern_keeps: bool,
}

/// `Handover` (request: [`PeerVolumeRequest`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandoverReply {
    /// `presynced` (the app still runs here: stop it and call again) or
    /// `handed-over` (the final state is on the peer).
    pub phase: String,
    pub snapshot: String,
    pub rounds: usize,
    /// Stream bytes moved by this call.
    pub bytes: u64,
    /// The final snapshot and send: the downtime-critical part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_seconds: Option<f64>,
}

/// `Snapshot.Send` with `Detail`: one line for the operator.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryReply {
    #[serde(default)]
    pub summary: String,
}

/// `Transfers`: the sends running now on the daemon, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TransfersReply {
    #[serde(default)]
    pub transfers: Vec<TransferStatus>,
}

/// One send in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TransferStatus {
    pub snapshot: String,
    /// As the send was asked for (`user@host` included).
    pub host: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub elapsed_seconds: f64,
    /// `true`: a full send, `false`: incremental, absent: the peer is
    /// still being asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<bool>,
    /// Stream bytes read from the send so far (before zstd).
    pub bytes: u64,
    /// Bytes written to the SSH channel so far (updated every 0.5 s).
    pub wire_bytes: u64,
    /// What the whole stream should come to, when it can be told: a full
    /// send, from the volume's last size measurement (`status`'s). Absent
    /// for an incremental send: nothing measures a difference up front.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_bytes: Option<u64>,
}

pub use status::{JobStatus, PeerStatus, Problem, ProblemKind, StatusReply, VolumeStatus};

pub mod status;

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
