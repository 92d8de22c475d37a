//! Replication to the passive node: incremental btrfs send/receive over SSH
//! (`Snapshot.Send`) and rsync pulls (`Volume.Sync`).

use crate::volumes::VolumeStore;

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("{0}")]
    Failed(String),
}

/// What a completed send did.
#[derive(Debug, Clone, Default)]
pub struct SendReport {
    /// The parent used for an incremental send, `None` for a full send.
    pub parent: Option<String>,
    pub bytes: u64,
    pub seconds: f64,
}

/// Sends snapshot `snapshot` to `host`. Blocking.
pub fn send(
    _store: &VolumeStore,
    _snapshot: &str,
    _host: &str,
    _test: bool,
) -> Result<SendReport, ReplicationError> {
    Err(ReplicationError::Failed("send: being implemented".into()))
}

/// Pulls each volume's content from each host with rsync. Blocking.
pub fn sync(
    _store: &VolumeStore,
    _volumes: &[String],
    _hosts: &[String],
    _test: bool,
) -> Result<(), ReplicationError> {
    Err(ReplicationError::Failed("sync: being implemented".into()))
}
