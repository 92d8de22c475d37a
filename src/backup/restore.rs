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
//!
//! One restic run: `restic restore latest --tag buttervolume,volume:<v>`
//! (plus `snapshot:<name>` for a named one) lets restic choose the newest
//! backup by its time, as a listing first would, without that listing's
//! run (each run pays restic's key derivation, ~0.5 s). The reply's
//! snapshot name is the named one, else this node's record of the backup
//! it made with that id ([`super::record::Record::snapshot_of`]: an id
//! names the restic snapshot's content, tags included, so this cannot be
//! stale), else, for a backup another node made, a listing after the
//! restore.

use super::restic::Restic;
use super::{record, target, volume_tag, BackupError, Result, TAG};
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
    let restic = Restic::new(&target, store.config());
    let mut tags = vec![TAG.to_string(), volume_tag(&volume)];
    tags.extend(wanted.as_ref().map(|w| format!("snapshot:{w}")));
    let no_backup = || BackupError::NoBackup {
        volume: volume.clone(),
        target: target.name.to_string(),
        at: wanted
            .as_ref()
            .map(|w| format!(" of {w}"))
            .unwrap_or_default(),
    };

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
    let built = (|| -> Result<String> {
        let id = restic
            .restore_latest(&tags, &staged)?
            .ok_or_else(no_backup)?;
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
        Ok(id)
    })();
    let id = match built {
        Ok(id) => id,
        Err(e) => {
            let _ = store.fs().delete(&staged);
            return Err(e);
        }
    };
    let snapshot = match &wanted {
        Some(w) => w.clone(),
        None => snapshot_name(store, &restic, &volume, &id),
    };
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
    tracing::info!(target = %target.name, volume = dest, id, snapshot, "restored a backup");
    Ok(Restored {
        volume: dest,
        snapshot,
        id,
        previous,
    })
}

/// The local snapshot the backup `id` (short) holds: this node's record
/// when it made it, else its tag in a listing (a backup another node made).
fn snapshot_name(store: &VolumeStore, restic: &Restic, volume: &str, id: &str) -> String {
    let known = record::load(&store.config().state_path, &restic.target().name);
    if let Some(name) = known.snapshot_of(id) {
        return name.to_string();
    }
    match restic.snapshots(&[TAG.to_string(), volume_tag(volume)]) {
        Ok(list) => list
            .iter()
            .find(|s| s.id.starts_with(id))
            .and_then(|s| s.tag("snapshot"))
            .unwrap_or_default()
            .to_string(),
        Err(e) => {
            tracing::warn!(volume, id, error = %e, "restored; cannot list the backup's snapshot name");
            String::new()
        }
    }
}
