//! `backup <target> <volume>`: one consistent, incremental backup.
//!
//! 1. The target is read and the repository asked for the volume's
//!    backups before anything local happens: a wrong password, an
//!    unreachable or locked repository fails here with nothing changed
//!    (an absent repository is initialised, logged).
//! 2. The state to back up: the volume's newest snapshot when the volume
//!    is unchanged since it, else a fresh one
//!    ([`crate::snapshots::snapshot_if_changed`]).
//! 3. A backup tagged with that snapshot's UUID already there: nothing to
//!    do (an unchanged volume costs two restic listings).
//! 4. Else restic backs up `.` from a private read-only snapshot of it in
//!    the staging dir (a purge cannot pull it away mid-way; a crash leaves
//!    a staging leftover swept at the next start), with the volume's
//!    newest backup as `--parent`. btrfs snapshots keep inode numbers,
//!    ctimes, mtimes and sizes, and `.` keeps the paths inside the tree the
//!    same from one snapshot to the next, so restic reads only the files
//!    that changed.

use super::record::{self, Done};
use super::restic::{Restic, ResticError};
use super::{target, volume_tag, BackupError, Result, TAG};
use crate::snapshots;
use crate::volumes::VolumeStore;

/// What a backup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackedUp {
    /// The local snapshot backed up.
    pub snapshot: String,
    /// The restic snapshot holding it.
    pub id: String,
    /// False when the target held that snapshot already.
    pub created: bool,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    /// Bytes the repository grew by.
    pub bytes_added: u64,
    /// Bytes of the volume's files.
    pub bytes: u64,
}

/// Backs up `volume` to target `target_name`; the outcome (or the error)
/// is recorded for `status`.
pub fn backup(store: &VolumeStore, target_name: &str, volume: &str) -> Result<BackedUp> {
    let target = target(store, target_name)?;
    store.existing(volume)?;
    let state = store.config().state_path.clone();
    let outcome = backup_to(store, &target, volume);
    match &outcome {
        Ok(done) => record::note_done(
            &state,
            &target.name,
            volume,
            Done {
                snapshot: done.snapshot.clone(),
                id: done.id.clone(),
                time: record::stamp(),
                bytes: done.bytes,
                added: done.bytes_added,
            },
        ),
        Err(e) => record::note_error(&state, &target.name, volume, &e.to_string()),
    }
    outcome
}

fn backup_to(store: &VolumeStore, target: &super::Target, volume: &str) -> Result<BackedUp> {
    let restic = Restic::new(target, &store.config().state_path);
    let tags = [TAG.to_string(), volume_tag(volume)];
    let existing = match restic.snapshots(&tags) {
        Ok(list) => list,
        Err(ResticError::Absent(repo)) => {
            if let Some(dir) = target.local_path() {
                let parent = dir.parent().map(|p| p.to_path_buf()).unwrap_or_default();
                if !parent.is_dir() {
                    return Err(BackupError::NoParentDir(parent));
                }
            }
            tracing::info!(target = %target.name, repository = repo, "initialising the restic repository");
            restic.init()?;
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    let taken = snapshots::snapshot_if_changed(store, volume)?;
    let source = snapshots::snapshot_path(store, &taken.name)?;
    let identity = store.fs().identity(&source)?;
    let uuid_tag = format!("uuid:{}", identity.uuid);
    if let Some(held) = existing.iter().rev().find(|s| s.tags.contains(&uuid_tag)) {
        let known = super::record::load(&store.config().state_path, &target.name);
        return Ok(BackedUp {
            snapshot: taken.name,
            id: held.id.clone(),
            created: false,
            files_new: 0,
            files_changed: 0,
            files_unmodified: 0,
            bytes_added: 0,
            bytes: known.size_of(&held.id).unwrap_or(0),
        });
    }
    let parent = existing.last().map(|s| s.id.clone());
    let staged = store.staging_path(&format!("{volume}.backup"))?;
    store.fs().snapshot(&source, &staged, true)?;
    let mut all_tags = tags.to_vec();
    all_tags.push(format!("snapshot:{}", taken.name));
    all_tags.push(uuid_tag);
    let outcome = restic.backup(&staged, &all_tags, parent.as_deref());
    let _ = store.fs().set_read_only(&staged, false);
    if let Err(e) = store.fs().delete(&staged) {
        tracing::warn!(path = %staged.display(), error = %e, "backup staging left; removed at next start");
    }
    let summary = outcome?;
    tracing::info!(
        target = %target.name, volume, snapshot = taken.name, id = summary.snapshot_id,
        parent = parent.as_deref().unwrap_or("none"),
        files_new = summary.files_new, files_changed = summary.files_changed,
        files_unmodified = summary.files_unmodified, added = summary.data_added,
        "backed up"
    );
    Ok(BackedUp {
        snapshot: taken.name,
        // restic 0.14's summary has the short id (restic takes it
        // everywhere); another listing for the long one would cost a run.
        id: summary.snapshot_id,
        created: true,
        files_new: summary.files_new,
        files_changed: summary.files_changed,
        files_unmodified: summary.files_unmodified,
        bytes_added: summary.data_added,
        bytes: summary.total_bytes_processed,
    })
}
