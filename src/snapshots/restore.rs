//! Restore and clone: a new volume built from a snapshot (or a volume) in
//! the staging dir and moved into place atomically, as the module doc of
//! [`super`] describes.

use std::path::Path;

use super::{
    holders, io, newest, snapshot_path, timestamped_snapshot, Placed, Result, SnapshotError,
};
use crate::btrfs::SubvolumeIdentity;
use crate::fsutil;
use crate::names;
use crate::volumes::{Activity, VolumeStore};

/// How a restore treats the target.
#[derive(Debug, Clone, Copy)]
pub struct RestoreOptions {
    /// Restore even into a mounted or non-migrable target.
    pub force: bool,
    /// Snapshot the target before swapping it out. Only a caller that has
    /// just checked the target is unchanged since a snapshot it keeps (the
    /// mount-time follow) turns this off.
    pub backup: bool,
}

/// `VolumeDriver.Snapshot.Restore`. `name` is a snapshot, or a volume
/// meaning its newest snapshot in creation order ([`super::by_creation`]).
/// Returns the backup snapshot's name when the target existed (`None` also
/// when a volume has no snapshot at all, which the reference treats as
/// success).
pub fn restore(
    store: &VolumeStore,
    name: &str,
    target: Option<&str>,
    force: bool,
) -> Result<Option<String>> {
    restore_with(
        store,
        name,
        target,
        RestoreOptions {
            force,
            backup: true,
        },
    )
}

/// [`restore`] with explicit [`RestoreOptions`].
pub fn restore_with(
    store: &VolumeStore,
    name: &str,
    target: Option<&str>,
    options: RestoreOptions,
) -> Result<Option<String>> {
    let force = options.force;
    let snapshot = if name.contains('@') {
        name.to_string()
    } else {
        names::check_volume(name)?;
        match newest(store, name) {
            Some(newest) => newest,
            None => {
                tracing::warn!(
                    volume = name,
                    "restore: the volume has no snapshot, nothing done"
                );
                return Ok(None);
            }
        }
    };
    let source = snapshot_path(store, &snapshot)?;
    let source_volume = names::volume_of(&snapshot).to_string();
    let target = target
        .filter(|t| !t.is_empty())
        .unwrap_or(&source_volume)
        .to_string();
    let target_path = store.path_of(&target)?;
    if !store.fs().is_subvolume(&source) {
        return Err(SnapshotError::NoSuchSnapshot(snapshot));
    }
    if target != source_volume && !store.fs().is_subvolume(&target_path) {
        // A new volume: held to the length rule like Create.
        names::check_new_volume(&target)?;
    }
    let _held = store.exclusive(&target, Activity::Restore)?;
    let target_exists = store.fs().is_subvolume(&target_path);
    let source_meta = store.read_metadata(&source).unwrap_or_default();
    let source_id = store.fs().identity(&source)?;
    let mut metadata = if target_exists {
        let mut current = store.read_metadata(&target_path).unwrap_or_default();
        if !force {
            if current.nonmigrable && source_volume != target {
                return Err(SnapshotError::NonMigrable { target, snapshot });
            }
            let mounts = store.mount_count(&target);
            if mounts > 0 {
                return Err(SnapshotError::Mounted { target, mounts });
            }
        }
        // The target keeps its identity (labels, flag); restoring its own
        // past cannot make it migrable again.
        if source_volume == target {
            current.nonmigrable |= source_meta.nonmigrable;
        }
        current
    } else {
        source_meta.clone()
    };
    metadata.descend_from(&source_id, &source_meta);

    let staged = store.staging_path(&target)?;
    store.fs().snapshot(&source, &staged, false)?;
    if let Err(e) = store.write_metadata(&staged, &metadata) {
        let _ = store.fs().delete(&staged);
        return Err(e.into());
    }
    if !target_exists {
        if let Err(e) = fsutil::rename_noreplace(&staged, &target_path) {
            let _ = store.fs().delete(&staged);
            return Err(io(format!("moving the restored {target} into place"))(e));
        }
        remember(store, &target, &target_path, &snapshot, source_id, false);
        return Ok(None);
    }
    let backup = if options.backup {
        match timestamped_snapshot(store, &target, &target_path) {
            Ok(b) => Some(b),
            Err(e) => {
                let _ = store.fs().delete(&staged);
                return Err(e);
            }
        }
    } else {
        None
    };
    if let Err(e) = fsutil::rename_exchange(&staged, &target_path) {
        let _ = store.fs().delete(&staged);
        return Err(io(format!("swapping the restored {target} into place"))(e));
    }
    // `staged` now holds the previous content, saved in `backup` (or, with
    // no backup, in the snapshot the caller keeps).
    if let Err(e) = store.fs().delete(&staged) {
        tracing::warn!(path = %staged.display(), error = %e, "old content left in staging; removed at next start");
    }
    remember(
        store,
        &target,
        &target_path,
        &snapshot,
        source_id,
        backup.is_some(),
    );
    Ok(backup)
}

/// Records what a restore put in place ([`holders::note_restored`]): only a
/// restore of a volume's own snapshot that made no backup; any other
/// restore forgets an earlier record.
fn remember(
    store: &VolumeStore,
    target: &str,
    target_path: &Path,
    snapshot: &str,
    source_id: SubvolumeIdentity,
    backed_up: bool,
) {
    holders::forget_restored(store, target);
    if backed_up || names::volume_of(snapshot) != target {
        return;
    }
    let _ = store.fs().flush(target_path);
    if let Ok(current) = store.fs().identity(target_path) {
        let source = Placed {
            name: snapshot.to_string(),
            identity: source_id,
        };
        holders::note_restored(store, target, &current, &source);
    }
}

/// `VolumeDriver.Clone`: a writable copy of volume `name` called `target`.
pub fn clone(store: &VolumeStore, name: &str, target: &str) -> Result<String> {
    let source = store.existing(name)?;
    let target_path = store.path_of(target)?;
    names::check_new_volume(target)?;
    let _guard = store.lock(target);
    if target_path.exists() {
        return Err(SnapshotError::TargetExists(target.into()));
    }
    let staged = store.staging_path(target)?;
    store.fs().snapshot(&source, &staged, false)?;
    let finish = (|| {
        let mut metadata = store.read_metadata(&staged).unwrap_or_default();
        // Docker knows nothing of the clone's labels yet.
        metadata.labels.clear();
        metadata.created_at = Some(chrono::Local::now().to_rfc3339());
        store.write_metadata(&staged, &metadata)?;
        fsutil::rename_noreplace(&staged, &target_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                SnapshotError::TargetExists(target.into())
            } else {
                io(format!("moving the clone {target} into place"))(e)
            }
        })
    })();
    if let Err(e) = finish {
        let _ = store.fs().delete(&staged);
        return Err(e);
    }
    Ok(target.into())
}
