//! `restore-backup <target> <volume>[@<timestamp>] [<new volume>]`: a
//! backup restored into a new volume, or in place when the volume is not
//! in use.
//!
//! restic restores into a fresh subvolume in the staging dir; only once it
//! finished is that subvolume moved into place (`RENAME_NOREPLACE` for a
//! new volume; for an existing one, its current state is first kept as a
//! snapshot, as `restore` does, then the two are swapped in one
//! `RENAME_EXCHANGE`). A failed or killed restore leaves the volume as it
//! was and a staging leftover swept at the next start.

use super::restic::{Restic, ResticSnapshot};
use super::{target, volume_tag, BackupError, Result, TAG};
use crate::fsutil;
use crate::names;
use crate::snapshots::SnapshotError;
use crate::volumes::{Activity, VolumeStore};

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The volume restored into.
    pub volume: String,
    /// The local snapshot name the backup was made from.
    pub snapshot: String,
    /// The restic snapshot restored.
    pub id: String,
    /// The snapshot keeping the volume's previous state (in place only).
    pub previous: Option<String>,
}

/// Restores `source` (`<volume>` for its newest backup, or
/// `<volume>@<timestamp>` for the backup of that snapshot) from target
/// `target_name` into `into` (default: the volume itself, in place).
pub fn restore(
    store: &VolumeStore,
    target_name: &str,
    source: &str,
    into: Option<&str>,
) -> Result<Restored> {
    let target = target(store, target_name)?;
    let (volume, wanted) = match source.split_once('@') {
        Some((v, _)) => {
            names::check_snapshot(source)?;
            (v.to_string(), Some(source.to_string()))
        }
        None => {
            names::check_volume(source)?;
            (source.to_string(), None)
        }
    };
    let dest = into
        .filter(|n| !n.is_empty())
        .unwrap_or(&volume)
        .to_string();
    let dest_path = store.path_of(&dest)?;
    let in_place = store.fs().is_subvolume(&dest_path);
    if !in_place {
        names::check_new_volume(&dest)?;
    }
    let restic = Restic::new(&target, &store.config().state_path);
    let chosen = choose(
        restic.snapshots(&[TAG.to_string(), volume_tag(&volume)])?,
        wanted.as_deref(),
    )
    .ok_or_else(|| BackupError::NoBackup {
        volume: volume.clone(),
        target: target.name.to_string(),
        at: wanted
            .as_ref()
            .map(|w| format!(" of {w}"))
            .unwrap_or_default(),
    })?;
    let snapshot = chosen.tag("snapshot").unwrap_or_default().to_string();

    let _held = store.exclusive(&dest, Activity::Restore)?;
    if in_place {
        let mounts = store.mount_count(&dest);
        if mounts > 0 {
            return Err(SnapshotError::Mounted {
                target: dest,
                mounts,
            }
            .into());
        }
    }
    let staged = store.staging_path(&dest)?;
    store.fs().create(&staged)?;
    let built = (|| -> Result<()> {
        restic.restore(&chosen.id, &staged)?;
        let mut metadata = if in_place {
            store.read_metadata(&dest_path).unwrap_or_default()
        } else {
            // What the backup carried on its root, Docker's labels aside.
            let mut m = store.read_metadata(&staged).unwrap_or_default();
            m.labels.clear();
            m.created_at = Some(chrono::Local::now().to_rfc3339());
            m
        };
        metadata.lineage.clear();
        store.write_metadata(&staged, &metadata)?;
        Ok(())
    })();
    if let Err(e) = built {
        let _ = store.fs().delete(&staged);
        return Err(e);
    }
    let previous = if in_place {
        let kept = match crate::snapshots::timestamped_snapshot(store, &dest, &dest_path) {
            Ok(k) => k,
            Err(e) => {
                let _ = store.fs().delete(&staged);
                return Err(e.into());
            }
        };
        if let Err(e) = fsutil::rename_exchange(&staged, &dest_path) {
            let _ = store.fs().delete(&staged);
            return Err(super::io(format!(
                "swapping the restored {dest} into place"
            ))(e));
        }
        if let Err(e) = store.fs().delete(&staged) {
            tracing::warn!(path = %staged.display(), error = %e, "old content left in staging; removed at next start");
        }
        Some(kept)
    } else {
        if let Err(e) = fsutil::rename_noreplace(&staged, &dest_path) {
            let _ = store.fs().delete(&staged);
            return Err(super::io(format!("moving the restored {dest} into place"))(
                e,
            ));
        }
        None
    };
    tracing::info!(target = %target.name, volume = dest, id = chosen.id, snapshot, "restored a backup");
    Ok(Restored {
        volume: dest,
        snapshot,
        id: chosen.id,
        previous,
    })
}

/// The newest backup (by restic's time), or the one of snapshot `wanted`.
fn choose(list: Vec<ResticSnapshot>, wanted: Option<&str>) -> Option<ResticSnapshot> {
    list.into_iter()
        .rev()
        .find(|s| wanted.is_none_or(|w| s.tag("snapshot") == Some(w)))
}
