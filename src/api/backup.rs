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
#[serde(rename_all = "PascalCase")]
pub struct BackupRequest {
    pub target: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupReply {
    /// The local snapshot backed up.
    pub snapshot: String,
    /// The restic snapshot id holding it.
    pub id: String,
    /// False when the target held that snapshot already.
    pub created: bool,
    #[serde(default)]
    pub files_new: u64,
    #[serde(default)]
    pub files_changed: u64,
    #[serde(default)]
    pub files_unmodified: u64,
    /// Bytes the repository grew by.
    #[serde(default)]
    pub bytes_added: u64,
    /// Bytes of the volume's files.
    #[serde(default)]
    pub bytes: u64,
}

/// `Backup.List`: the backups in `Target` (of volume `Name` when given).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupListRequest {
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupListReply {
    #[serde(default)]
    pub backups: Vec<BackupEntry>,
}

/// One backup, oldest first in the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupEntry {
    pub volume: String,
    pub snapshot: String,
    pub id: String,
    /// When restic made it (RFC 3339).
    pub time: String,
    /// The volume's bytes, when this node made the backup.
    pub bytes: Option<u64>,
}

/// `Backup.Restore`: `Name` is `<volume>` (its newest backup) or
/// `<volume>@<timestamp>`; `NewName` a new volume (default: in place).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupRestoreRequest {
    pub target: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupRestoreReply {
    pub volume: String,
    /// The local snapshot the backup was made from (its `snapshot:` tag).
    pub snapshot: String,
    /// The restic snapshot restored (restic's short id, as `Backup`'s).
    pub id: String,
    /// In place: the snapshot keeping the volume's previous state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_backup: Option<String>,
}

/// `Backup.Check`: restic's check of `Target`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupCheckRequest {
    pub target: String,
    /// `--read-data-subset` (`n%` or `n/t`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_data_subset: Option<String>,
}

/// `Backup.Check`: restic's last line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupCheckReply {
    #[serde(default)]
    pub summary: String,
}

/// A volume's backups to one target, as `status` shows them: from this
/// node's record ([`crate::backup::record`]) and the volume's
/// `backup:<target>` job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupStatus {
    pub target: String,
    /// The last backup (or the one found there already).
    #[serde(default)]
    pub snapshot: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    /// When it was made (RFC 3339).
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub age_seconds: Option<i64>,
    /// The volume's bytes in it.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// The `backup:<target>` job's timer, when scheduled.
    #[serde(default)]
    pub timer: Option<String>,
    /// The last failure, when after the last backup.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The target's last check: `ok` or the error, with its time.
    #[serde(default)]
    pub last_check: Option<String>,
    #[serde(default)]
    pub last_check_ok: Option<bool>,
}
