//! Off-site, encrypted backups of volumes to restic repositories.
//!
//! - [`targets`]: the `<name>.env` files in BACKUP_TARGETS_PATH and who may
//!   read them;
//! - [`restic`]: running `restic` (argument vectors, `--json` parsed, its
//!   stderr turned into [`restic::ResticError`]);
//! - [`run`]: `backup`: a consistent state (the newest snapshot when the
//!   volume is unchanged since it, else a fresh one), skipped when the
//!   target holds it already, incremental against the volume's last backup;
//! - [`restore`]: `restore-backup`, through a staging subvolume moved into
//!   place only when complete;
//! - [`keep`]: `KEEP` thinning with the purge rule;
//! - [`record`]: what this node remembers of its backups (sizes, last
//!   result and check per target) for `backups`, `status` and metrics.
//!
//! Every backup is tagged `buttervolume`, `volume:<volume>`,
//! `snapshot:<snapshot>` and `uuid:<btrfs uuid of the snapshot>`, and holds
//! the volume's files at the root of its tree, so a plain
//! `restic restore <id> --target <dir>` gives them back without us.

pub mod keep;
pub mod record;
pub mod restic;
pub mod restore;
pub mod run;
pub mod targets;

use std::path::PathBuf;

pub use restic::ResticError;
pub use run::backup;
pub use targets::{Target, TargetName};

use crate::volumes::VolumeStore;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("invalid backup target name {0:?}: letters, digits and '._-', at most 64 bytes")]
    TargetName(String),
    #[error("no backup target {name}: cannot read {path}: {source}")]
    NoTarget {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refusing {path}: it must belong to root (uid {uid} now) and be readable by it alone (mode {mode:o} now; chmod 600)")]
    NotPrivate { path: PathBuf, mode: u32, uid: u32 },
    #[error("invalid backup target file {path}: {reason}")]
    TargetFile { path: PathBuf, reason: String },
    #[error(transparent)]
    Restic(#[from] ResticError),
    #[error(transparent)]
    Volume(#[from] crate::volumes::VolumeError),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshots::SnapshotError),
    #[error(transparent)]
    Btrfs(#[from] crate::btrfs::BtrfsError),
    #[error(transparent)]
    Name(#[from] crate::names::NameError),
    #[error("no backup of volume {volume} in target {target}{at}")]
    NoBackup {
        volume: String,
        target: String,
        at: String,
    },
    #[error("refusing to initialise a repository at {0}: its parent directory does not exist (is the backup disk mounted?)")]
    NoParentDir(PathBuf),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, BackupError>;

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let context = context.into();
    move |source| BackupError::Io { context, source }
}

/// The tag every backup of ours carries.
pub const TAG: &str = "buttervolume";

/// The tag naming a backup's volume.
pub fn volume_tag(volume: &str) -> String {
    format!("volume:{volume}")
}

/// Loads a target from this node's BACKUP_TARGETS_PATH.
pub fn target(store: &VolumeStore, name: &str) -> Result<Target> {
    targets::load(&store.config().backup_targets_path, name)
}

/// One backup as `backups` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub volume: String,
    pub snapshot: String,
    pub id: String,
    pub time: String,
    /// The volume's size when it was backed up, when this node made it.
    pub bytes: Option<u64>,
}

/// `backups <target> [<volume>]`: our backups in the target, oldest first.
pub fn list(store: &VolumeStore, target_name: &str, volume: Option<&str>) -> Result<Vec<Listed>> {
    let target = target(store, target_name)?;
    if let Some(v) = volume {
        crate::names::check_volume(v)?;
    }
    let mut tags = vec![TAG.to_string()];
    tags.extend(volume.map(volume_tag));
    let restic = restic::Restic::new(&target, store.config());
    let record = record::load(&store.config().state_path, &target.name);
    Ok(restic
        .snapshots(&tags)?
        .into_iter()
        .filter_map(|s| {
            Some(Listed {
                volume: s.tag("volume")?.to_string(),
                snapshot: s.tag("snapshot").unwrap_or_default().to_string(),
                bytes: record.size_of(&s.id),
                time: s.time.to_rfc3339(),
                id: s.id,
            })
        })
        .collect())
}

/// `check-backups <target> [--read-data-subset <n%>]`: restic's check;
/// the result is recorded for `status`. Returns restic's last line.
pub fn check(store: &VolumeStore, target_name: &str, subset: Option<&str>) -> Result<String> {
    if let Some(s) = subset {
        let valid = s
            .strip_suffix('%')
            .and_then(|n| n.parse::<f64>().ok())
            .is_some_and(|n| n > 0.0 && n <= 100.0)
            || s.split_once('/').is_some_and(|(a, b)| {
                a.parse::<u32>().is_ok_and(|a| a > 0) && b.parse::<u32>().is_ok_and(|b| b > 0)
            });
        if !valid {
            return Err(BackupError::TargetFile {
                path: PathBuf::from("--read-data-subset"),
                reason: format!("{s:?}: expected n% or n/t"),
            });
        }
    }
    let target = target(store, target_name)?;
    let restic = restic::Restic::new(&target, store.config());
    let outcome = restic.check(subset);
    let state = &store.config().state_path;
    let summary = match &outcome {
        Ok(out) => Ok(out
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("no errors were found")
            .to_string()),
        Err(e) => Err(e.to_string()),
    };
    record::note_check(state, &target.name, summary.clone());
    outcome?;
    Ok(summary.unwrap_or_default())
}
