//! Request and reply bodies of the backup endpoints ([`crate::backup`]),
//! shared by the server and the CLI.

use serde::{Deserialize, Serialize};

/// Endpoint paths.
pub mod path {
    pub const BACKUP: &str = "/VolumeDriver.Backup";
    pub const BACKUP_LIST: &str = "/VolumeDriver.Backup.List";
    pub const BACKUP_RESTORE: &str = "/VolumeDriver.Backup.Restore";
    pub const BACKUP_CHECK: &str = "/VolumeDriver.Backup.Check";
}

/// `Backup`: back up volume `Name` to `Target`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupRequest {
    #[serde(rename = "Target")]
    pub target: String,
    #[serde(rename = "Name")]
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackupReply {
    /// The local snapshot backed up.
    #[serde(rename = "Snapshot")]
    pub snapshot: String,
    /// The restic snapshot id holding it.
    #[serde(rename = "Id")]
    pub id: String,
    /// False when the target held that snapshot already.
    #[serde(rename = "Created")]
    pub created: bool,
    #[serde(rename = "FilesNew", default)]
    pub files_new: u64,
    #[serde(rename = "FilesChanged", default)]
    pub files_changed: u64,
    #[serde(rename = "FilesUnmodified", default)]
    pub files_unmodified: u64,
    /// Bytes the repository grew by.
    #[serde(rename = "BytesAdded", default)]
    pub bytes_added: u64,
    /// Bytes of the volume's files.
    #[serde(rename = "Bytes", default)]
    pub bytes: u64,
}

/// `Backup.List`: the backups in `Target` (of volume `Name` when given).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupListRequest {
    #[serde(rename = "Target")]
    pub target: String,
    #[serde(rename = "Name", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackupListReply {
    #[serde(rename = "Backups", default)]
    pub backups: Vec<BackupEntry>,
}

/// One backup, oldest first in the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupEntry {
    #[serde(rename = "Volume")]
    pub volume: String,
    #[serde(rename = "Snapshot")]
    pub snapshot: String,
    #[serde(rename = "Id")]
    pub id: String,
    /// When restic made it (RFC 3339).
    #[serde(rename = "Time")]
    pub time: String,
    /// The volume's bytes, when this node made the backup.
    #[serde(rename = "Bytes")]
    pub bytes: Option<u64>,
}

/// `Backup.Restore`: `Name` is `<volume>` (its newest backup) or
/// `<volume>@<timestamp>`; `NewName` a new volume (default: in place).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupRestoreRequest {
    #[serde(rename = "Target")]
    pub target: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "NewName", default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackupRestoreReply {
    #[serde(rename = "Volume")]
    pub volume: String,
    /// The local snapshot the backup was made from (its `snapshot:` tag).
    #[serde(rename = "Snapshot")]
    pub snapshot: String,
    /// The restic snapshot restored (restic's short id, as `Backup`'s).
    #[serde(rename = "Id")]
    pub id: String,
    /// In place: the snapshot keeping the volume's previous state.
    #[serde(
        rename = "VolumeBackup",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub volume_backup: Option<String>,
}

/// `Backup.Check`: restic's check of `Target`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupCheckRequest {
    #[serde(rename = "Target")]
    pub target: String,
    /// `--read-data-subset` (`n%` or `n/t`).
    #[serde(
        rename = "ReadDataSubset",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub read_data_subset: Option<String>,
}

/// `Backup.Check`: restic's last line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackupCheckReply {
    #[serde(rename = "Summary", default)]
    pub summary: String,
}

/// A volume's backups to one target, as `status` shows them: from this
/// node's record ([`crate::backup::record`]) and the volume's
/// `backup:<target>` job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStatus {
    #[serde(rename = "Target")]
    pub target: String,
    /// The last backup (or the one found there already).
    #[serde(rename = "Snapshot", default)]
    pub snapshot: Option<String>,
    #[serde(rename = "Id", default)]
    pub id: Option<String>,
    /// When it was made (RFC 3339).
    #[serde(rename = "Time", default)]
    pub time: Option<String>,
    #[serde(rename = "AgeSeconds", default)]
    pub age_seconds: Option<i64>,
    /// The volume's bytes in it.
    #[serde(rename = "Bytes", default)]
    pub bytes: Option<u64>,
    /// The `backup:<target>` job's timer, when scheduled.
    #[serde(rename = "Timer", default)]
    pub timer: Option<String>,
    /// The last failure, when after the last backup.
    #[serde(rename = "LastError", default)]
    pub last_error: Option<String>,
    /// The target's last check: `ok` or the error, with its time.
    #[serde(rename = "LastCheck", default)]
    pub last_check: Option<String>,
    #[serde(rename = "LastCheckOk", default)]
    pub last_check_ok: Option<bool>,
}
