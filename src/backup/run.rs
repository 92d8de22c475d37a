//! `backup <target> <volume>`: one consistent, incremental backup, in one
//! restic run in the common case (each run pays restic's key derivation,
//! ~0.5 s, which was most of the gap to a plain `restic backup`).
//!
//! - **The volume changed since its newest snapshot** (or has none): a
//!   read-only snapshot of it is taken privately in the staging dir
//!   ([`snapshots::hold_or_stage`]), under the name it will have. No
//!   backup anywhere can hold it (its UUID was just made), so restic backs
//!   it up at once, without a listing, with the volume's last backup from
//!   this node as `--parent` (from [`record`]; none known: no parent, the
//!   files are read in full once). Only once restic succeeded is the
//!   snapshot moved into SNAPSHOTS_PATH; a failed backup (wrong password,
//!   unreachable, locked or full repository) deletes it, so nothing local
//!   changed. A repository that does not exist yet is listed, initialised
//!   (logged) and the backup run again; a recorded parent restic no
//!   longer has (forgotten elsewhere) costs a run without it.
//! - **The volume is unchanged since snapshot S**: the repository, never
//!   our record, says whether it holds S (a backup tagged with S's UUID):
//!   one listing, then nothing to do, or a backup of S (from a private
//!   read-only snapshot of it, so a purge cannot pull it away mid-way)
//!   with the newest listed backup as parent.
//!
//! restic backs up `.`: btrfs snapshots keep inode numbers, ctimes, mtimes
//! and sizes, and `.` keeps the paths inside the tree the same from one
//! snapshot to the next, so restic reads only the files that changed. The
//! parent only steers that change detection: an older backup of the
//! volume costs reading a little more, never a wrong backup.

use super::record::{self, Done};
use super::restic::{BackupSummary, Restic, ResticError, ResticSnapshot};
use super::{target, volume_tag, BackupError, Result, TAG};
use crate::snapshots::{self, Staged};
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
                repository: Some(target.repository().to_string()),
            },
        ),
        Err(e) => record::note_error(&state, &target.name, volume, &e.to_string()),
    }
    outcome
}

fn backup_to(store: &VolumeStore, target: &super::Target, volume: &str) -> Result<BackedUp> {
    let restic = Restic::new(target, store.config());
    let staged = store.staging_path(&format!("{volume}.backup"))?;
    match snapshots::hold_or_stage(store, volume, &staged)? {
        Staged::Held(held) => {
            let existing = listing(target, &restic, volume)?;
            let uuid_tag = format!("uuid:{}", held.identity.uuid);
            if let Some(found) = existing.iter().rev().find(|s| s.tags.contains(&uuid_tag)) {
                let known = record::load(&store.config().state_path, &target.name);
                return Ok(BackedUp {
                    snapshot: held.name,
                    id: found.id.clone(),
                    created: false,
                    files_new: 0,
                    files_changed: 0,
                    files_unmodified: 0,
                    bytes_added: 0,
                    bytes: known.size_of(&found.id).unwrap_or(0),
                });
            }
            let source = snapshots::snapshot_path(store, &held.name)?;
            store.fs().snapshot(&source, &staged, true)?;
            let parent = existing.last().map(|s| s.id.as_str());
            let outcome = run(
                &restic,
                &staged,
                volume,
                &held.name,
                &held.identity.uuid,
                parent,
            );
            drop_staged(store, &staged);
            Ok(done(&restic, volume, &held.name, parent, outcome?))
        }
        Staged::Taken { name, identity } => {
            let hint = record::load(&store.config().state_path, &target.name)
                .last_known(volume, target.repository())
                .map(|d| d.id.clone());
            let attempt = |parent: Option<&str>| {
                run(&restic, &staged, volume, &name, &identity.uuid, parent)
                    .map(|summary| done(&restic, volume, &name, parent, summary))
            };
            let outcome = match attempt(hint.as_deref()) {
                Err(BackupError::Restic(ResticError::Absent(_))) => {
                    listing(target, &restic, volume)
                        .and_then(|existing| attempt(existing.last().map(|s| s.id.as_str())))
                }
                Err(BackupError::Restic(e)) if hint.is_some() && parent_gone(&e) => {
                    tracing::info!(target = %target.name, volume, parent = hint.as_deref(),
                        "the recorded last backup is no longer in the repository: backing up without a parent");
                    attempt(None)
                }
                other => other,
            };
            let published = outcome.and_then(|b| {
                snapshots::publish_staged(store, &staged, &name)?;
                Ok(b)
            });
            if published.is_err() {
                drop_staged(store, &staged);
            }
            published
        }
    }
}

/// restic's answer when `--parent` names no backup there.
fn parent_gone(e: &ResticError) -> bool {
    matches!(e, ResticError::Failed { detail, .. } if detail.contains("no matching ID found"))
}

/// The volume's backups in the repository, oldest first; an absent
/// repository is initialised (when a local one's parent dir exists).
fn listing(target: &super::Target, restic: &Restic, volume: &str) -> Result<Vec<ResticSnapshot>> {
    match restic.snapshots(&[TAG.to_string(), volume_tag(volume)]) {
        Ok(list) => Ok(list),
        Err(ResticError::Absent(repo)) => {
            if let Some(dir) = target.local_path() {
                let parent = dir.parent().map(|p| p.to_path_buf()).unwrap_or_default();
                if !parent.is_dir() {
                    return Err(BackupError::NoParentDir(parent));
                }
            }
            tracing::info!(target = %target.name, repository = repo, "initialising the restic repository");
            restic.init()?;
            Ok(Vec::new())
        }
        Err(e) => Err(e.into()),
    }
}

/// `restic backup .` in `staged`, tagged with the snapshot and its UUID.
fn run(
    restic: &Restic,
    staged: &std::path::Path,
    volume: &str,
    snapshot: &str,
    uuid: &str,
    parent: Option<&str>,
) -> Result<BackupSummary> {
    let tags = [
        TAG.to_string(),
        volume_tag(volume),
        format!("snapshot:{snapshot}"),
        format!("uuid:{uuid}"),
    ];
    Ok(restic.backup(staged, &tags, parent)?)
}

fn done(
    restic: &Restic,
    volume: &str,
    snapshot: &str,
    parent: Option<&str>,
    summary: BackupSummary,
) -> BackedUp {
    tracing::info!(
        target = %restic.target().name, volume, snapshot, id = summary.snapshot_id,
        parent = parent.unwrap_or("none"),
        files_new = summary.files_new, files_changed = summary.files_changed,
        files_unmodified = summary.files_unmodified, added = summary.data_added,
        "backed up"
    );
    BackedUp {
        snapshot: snapshot.to_string(),
        // restic 0.14's summary has the short id (restic takes it
        // everywhere); another listing for the long one would cost a run.
        id: summary.snapshot_id,
        created: true,
        files_new: summary.files_new,
        files_changed: summary.files_changed,
        files_unmodified: summary.files_unmodified,
        bytes_added: summary.data_added,
        bytes: summary.total_bytes_processed,
    }
}

fn drop_staged(store: &VolumeStore, staged: &std::path::Path) {
    if !staged.exists() {
        return;
    }
    let _ = store.fs().set_read_only(staged, false);
    if let Err(e) = store.fs().delete(staged) {
        tracing::warn!(path = %staged.display(), error = %e, "backup staging left; removed at next start");
    }
}
