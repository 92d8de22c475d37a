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

/// Endpoint paths.
pub mod path {
    pub const SNAPSHOT: &str = "/VolumeDriver.Snapshot";
    pub const SNAPSHOT_LIST: &str = "/VolumeDriver.Snapshot.List";
    pub const SNAPSHOT_REMOVE: &str = "/VolumeDriver.Snapshot.Remove";
    pub const SNAPSHOT_RESTORE: &str = "/VolumeDriver.Snapshot.Restore";
    pub const SNAPSHOT_SEND: &str = "/VolumeDriver.Snapshot.Send";
    pub const SNAPSHOT_RECEIVE: &str = "/VolumeDriver.Snapshot.Receive";
    pub const REPLICATE: &str = "/VolumeDriver.Replicate";
    pub const CLONE: &str = "/VolumeDriver.Clone";
    pub const PURGE: &str = "/VolumeDriver.Snapshots.Purge";
    pub const INSPECT: &str = "/VolumeDriver.Inspect";
    pub const SYNC: &str = "/VolumeDriver.Volume.Sync";
    pub const SCHEDULE: &str = "/VolumeDriver.Schedule";
    pub const SCHEDULE_LIST: &str = "/VolumeDriver.Schedule.List";
    pub const SCHEDULE_PAUSE: &str = "/VolumeDriver.Schedule.Pause";
    pub const SCHEDULE_RESUME: &str = "/VolumeDriver.Schedule.Resume";
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
    /// Docker's mount ID; older daemons may omit it.
    #[serde(rename = "ID", default)]
    pub id: Option<String>,
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PurgeReply {
    #[serde(rename = "Purged", default)]
    pub purged: Vec<String>,
}

/// `Snapshot.Send`: one line for the operator.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SummaryReply {
    #[serde(rename = "Summary", default)]
    pub summary: String,
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
