//! Snapshots, restore, clone and purge of local volumes.
//!
//! Snapshots are read-only subvolumes `SNAPSHOTS_PATH/<volume>@<timestamp>`
//! (one ioctl each). Restore and clone build the new volume in the staging
//! dir and move it into place atomically:
//!
//! - restore first saves the current target as a read-only snapshot (the
//!   `VolumeBackup`), then swaps the new subvolume with the target in one
//!   `renameat2(RENAME_EXCHANGE)`. At every instant the target name holds a
//!   complete volume; after a crash the swapped-out old content is a staging
//!   leftover, deleted at the next start (the backup snapshot keeps it).
//! - clone moves the new subvolume in with `RENAME_NOREPLACE`, so an existing
//!   volume is never overwritten, even by a racing create.

pub mod holders;
mod restore;
#[cfg(test)]
mod tests;

pub use restore::{clone, restore, restore_with, RestoreOptions};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDateTime};

use crate::btrfs::{self, BtrfsError};
use crate::fsutil;
use crate::names::{self, NameError};
use crate::purge::{self, Pattern};
use crate::subvolumes::Subvolumes;
use crate::volumes::{VolumeError, VolumeStore};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Btrfs(#[from] BtrfsError),
    #[error("At (evaluate the pattern as of another time) is only accepted with Dryrun: a purge deletes as of now")]
    AtWithoutDryrun,
    #[error(
        "invalid At {at:?}: expected a time in DTFORMAT ({dtformat}), like a snapshot's name has"
    )]
    BadAt { at: String, dtformat: String },
    #[error("No such snapshot: {0}")]
    NoSuchSnapshot(String),
    #[error("volume {0} already exists")]
    TargetExists(String),
    #[error("volume {target} is non-migrable: refusing to restore {snapshot}, a snapshot of another volume, into it (use --force to override)")]
    NonMigrable { target: String, snapshot: String },
    #[error("volume {target} is mounted by {mounts} container mount(s): stop them before restoring, or use --force")]
    Mounted { target: String, mounts: u32 },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, SnapshotError>;

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let context = context.into();
    move |source| SnapshotError::Io { context, source }
}

/// Path of a snapshot, after checking its name.
pub fn snapshot_path(store: &VolumeStore, name: &str) -> Result<PathBuf> {
    names::check_snapshot(name)?;
    Ok(store.config().snapshots_path.join(name))
}

/// Takes a read-only snapshot of `source` named `<volume>@<now>`. Two
/// snapshots in the same microsecond get distinct names: the timestamp is
/// moved forward by 1 µs until the name is free (creation fails atomically
/// with EEXIST, so concurrent callers cannot overwrite each other).
pub(crate) fn timestamped_snapshot(
    store: &VolumeStore,
    volume: &str,
    source: &Path,
) -> Result<String> {
    let mut stamp = names::local_now();
    loop {
        let name = format!(
            "{volume}@{}",
            names::format_timestamp(stamp, &store.config().dtformat)
        );
        // Only a volume name longer than the length rule allows (made
        // before it, or elsewhere) or a DTFORMAT longer than the reserved
        // MAX_TIMESTAMP_BYTES gets here.
        if name.len() > names::MAX_NAME_BYTES {
            return Err(NameError::TooLong(name).into());
        }
        let dest = store.config().snapshots_path.join(&name);
        if dest.exists() {
            stamp += Duration::microseconds(1);
            continue;
        }
        match store.fs().snapshot(source, &dest, true) {
            Ok(()) => {
                if let Ok(identity) = store.fs().identity(&dest) {
                    let taken = Placed {
                        name: name.clone(),
                        identity,
                    };
                    holders::note(store, volume, &taken);
                }
                return Ok(name);
            }
            Err(_) if dest.exists() => stamp += Duration::microseconds(1),
            Err(e) => return Err(e.into()),
        }
    }
}

/// `VolumeDriver.Snapshot`: snapshot a volume, return the snapshot name.
pub fn snapshot(store: &VolumeStore, volume: &str) -> Result<String> {
    let path = store.existing(volume)?;
    let _guard = store.lock(volume);
    timestamped_snapshot(store, volume, &path)
}

/// What [`snapshot_if_changed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The new snapshot, or the newest one when nothing changed.
    pub name: String,
    pub created: bool,
}

/// The snapshot that holds volume `volume`'s current state, if any: its
/// newest snapshot *of this very subvolume* (parent UUID is the volume's
/// UUID: not a restore's backup of the content swapped out, not a received
/// snapshot), when the volume's generation, once dirty data is flushed, is
/// not past the transaction that created it. A volume a restore put in
/// place is a new subvolume with no snapshot of its own yet: it holds the
/// snapshot it was restored from while unwritten, when that restore made
/// no backup ([`holders::recall_restored`]); else it counts as changed.
/// Two ioctls and a flush, no stream. The caller holds the volume's lock.
fn unchanged_since(store: &VolumeStore, path: &Path, volume: &str) -> Result<Option<Placed>> {
    store.fs().flush(path)?;
    let current = store.fs().identity(path)?;
    if let Some(known) = holders::recall(store, volume, &current) {
        return Ok(Some(known));
    }
    if let Some(source) = holders::recall_restored(store, volume, &current) {
        return Ok(Some(source));
    }
    let newest_of_this = by_creation(store.fs(), &store.config().snapshots_path, volume, false)
        .into_iter()
        .rev()
        .find(|p| p.identity.parent_uuid.as_deref() == Some(current.uuid.as_str()));
    if let Some(p) = &newest_of_this {
        holders::note(store, volume, p);
    }
    Ok(newest_of_this.filter(|p| current.generation <= p.identity.otransid))
}

/// [`unchanged_since`] for callers outside: the snapshot holding the
/// volume's state, `None` when it changed since its last snapshot (or has
/// none).
pub fn current_state(store: &VolumeStore, volume: &str) -> Result<Option<Placed>> {
    let path = store.existing(volume)?;
    let _guard = store.lock(volume);
    unchanged_since(store, &path, volume)
}

/// True for a volume with nothing to keep: empty, and no snapshot of it
/// was ever made here (received ones aside). Docker just created it.
pub fn is_fresh(store: &VolumeStore, volume: &str) -> Result<bool> {
    let path = store.existing(volume)?;
    // Emptiness first: it spares most volumes the directory scan.
    if !fsutil::is_empty_dir(&path).map_err(io("reading the volume"))? {
        return Ok(false);
    }
    let made_here = by_creation(store.fs(), &store.config().snapshots_path, volume, false)
        .iter()
        .any(|p| p.identity.received_uuid.is_none());
    Ok(!made_here)
}

/// Snapshots `volume` unless it is unchanged since its last snapshot
/// ([`unchanged_since`]), in which case that snapshot already holds its
/// state.
pub fn snapshot_if_changed(store: &VolumeStore, volume: &str) -> Result<Taken> {
    let path = store.existing(volume)?;
    let _guard = store.lock(volume);
    if let Some(holder) = unchanged_since(store, &path, volume)? {
        return Ok(Taken {
            name: holder.name,
            created: false,
        });
    }
    Ok(Taken {
        name: timestamped_snapshot(store, volume, &path)?,
        created: true,
    })
}

/// Every entry of SNAPSHOTS_PATH (markers included), or those of one volume,
/// sorted (= chronological per volume). One directory scan.
pub fn list(store: &VolumeStore, volume: Option<&str>) -> Result<Vec<String>> {
    let entries =
        std::fs::read_dir(&store.config().snapshots_path).map_err(io("listing snapshots"))?;
    let prefix = volume.map(|v| format!("{v}@"));
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .filter(|n| prefix.as_ref().is_none_or(|p| n.starts_with(p.as_str())))
        .collect();
    out.sort();
    Ok(out)
}

/// A snapshot with its identity, as [`by_creation`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub name: String,
    pub identity: btrfs::SubvolumeIdentity,
}

#[cfg(test)]
impl Placed {
    /// The snapshot `name` with `identity` (unit tests: see
    /// [`btrfs::SubvolumeIdentity::example`]).
    pub fn example(name: &str, identity: btrfs::SubvolumeIdentity) -> Placed {
        Placed {
            name: name.into(),
            identity,
        }
    }
}

impl Placed {
    /// Its place in btrfs creation order
    /// ([`btrfs::SubvolumeIdentity::creation_order`]).
    pub fn order(&self) -> (u64, u64) {
        self.identity.creation_order()
    }
}

/// What [`hold_or_stage`] found or made.
#[derive(Debug)]
pub enum Staged {
    /// The volume is unchanged since this snapshot of it.
    Held(Placed),
    /// A read-only snapshot of the volume, taken at the staging path given,
    /// to become snapshot `name` ([`publish_staged`]) once it served, or
    /// to be deleted: until then nobody else sees it.
    Taken {
        name: String,
        identity: btrfs::SubvolumeIdentity,
    },
}

/// [`snapshot_if_changed`] whose new snapshot stays private at `staged`
/// (in the staging dir) under the name it will have: a backup publishes
/// it only once restic holds it, so a failed backup leaves nothing here.
pub fn hold_or_stage(store: &VolumeStore, volume: &str, staged: &Path) -> Result<Staged> {
    let path = store.existing(volume)?;
    let _guard = store.lock(volume);
    if let Some(holder) = unchanged_since(store, &path, volume)? {
        return Ok(Staged::Held(holder));
    }
    let mut stamp = names::local_now();
    let name = loop {
        let name = format!(
            "{volume}@{}",
            names::format_timestamp(stamp, &store.config().dtformat)
        );
        if name.len() > names::MAX_NAME_BYTES {
            return Err(NameError::TooLong(name).into());
        }
        if !store.config().snapshots_path.join(&name).exists() {
            break name;
        }
        stamp += Duration::microseconds(1);
    };
    store.fs().snapshot(&path, staged, true)?;
    let identity = store.fs().identity(staged)?;
    Ok(Staged::Taken { name, identity })
}

/// Moves a snapshot [`hold_or_stage`] took into SNAPSHOTS_PATH as `name`
/// (never over an existing one). btrfs refuses to move a read-only
/// subvolume to another directory, so it is writable for the move only;
/// its UUID and creation generation stay those of the moment it was taken.
pub fn publish_staged(store: &VolumeStore, staged: &Path, name: &str) -> Result<()> {
    let dest = snapshot_path(store, name)?;
    store.fs().set_read_only(staged, false)?;
    if let Err(e) = fsutil::rename_noreplace(staged, &dest) {
        let _ = store.fs().set_read_only(staged, true);
        return Err(io(format!("moving the snapshot {name} into place"))(e));
    }
    store.fs().set_read_only(&dest, true)?;
    Ok(())
}

/// The snapshots of `volume` in `dir` (with its sent markers when
/// `markers`), oldest first in btrfs creation order. This is the one
/// definition of "newest" for restore, parent choice, purge protection and
/// inspect: a name dated in the future, or a peer with a skewed clock,
/// cannot make a snapshot newer than one created after it here. Entries
/// that are not subvolumes are skipped. Each entry's identity is read once,
/// here, and handed to the caller.
pub fn by_creation(fs: &dyn Subvolumes, dir: &Path, volume: &str, markers: bool) -> Vec<Placed> {
    let mut placed = by_creation_of_each(fs, dir, &[volume.to_string()])
        .remove(volume)
        .unwrap_or_default();
    if !markers {
        placed.retain(|p| !names::is_marker(&p.name));
    }
    placed
}

/// [`by_creation`] (markers included) for each of `volumes` (sorted), from
/// one scan of `dir`: what `status` needs for every volume at once.
pub fn by_creation_of_each(
    fs: &dyn Subvolumes,
    dir: &Path,
    volumes: &[String],
) -> BTreeMap<String, Vec<Placed>> {
    scan(fs, dir, |name| {
        let volume = names::volume_of(name);
        volumes.binary_search_by(|v| v.as_str().cmp(volume)).is_ok()
    })
}

/// The snapshots (no sent markers) of every volume with one in `dir`,
/// from one scan: a marker's identity is not even read.
pub fn snapshots_of_all(fs: &dyn Subvolumes, dir: &Path) -> BTreeMap<String, Vec<Placed>> {
    scan(fs, dir, |name| !names::is_marker(name))
}

/// The entries of `dir` named like snapshots or markers that `wanted`
/// keeps (it sees the name), by volume, each group in creation order.
fn scan(
    fs: &dyn Subvolumes,
    dir: &Path,
    wanted: impl Fn(&str) -> bool,
) -> BTreeMap<String, Vec<Placed>> {
    let mut out: BTreeMap<String, Vec<Placed>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for name in entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
    {
        let volume = names::volume_of(&name);
        if !name.contains('@') || name.starts_with('.') || !wanted(&name) {
            continue;
        }
        let Ok(identity) = fs.identity(&dir.join(&name)) else {
            continue;
        };
        out.entry(volume.to_string())
            .or_default()
            .push(Placed { name, identity });
    }
    for group in out.values_mut() {
        group.sort_by(|a, b| a.order().cmp(&b.order()).then_with(|| a.name.cmp(&b.name)));
    }
    out
}

/// The newest snapshot of `volume` (markers excluded), by creation order.
pub fn newest(store: &VolumeStore, volume: &str) -> Option<String> {
    by_creation(store.fs(), &store.config().snapshots_path, volume, false)
        .pop()
        .map(|p| p.name)
}

/// `VolumeDriver.Snapshot.Remove`.
pub fn remove(store: &VolumeStore, name: &str) -> Result<()> {
    let path = snapshot_path(store, name)?;
    if !store.fs().is_subvolume(&path) {
        return Err(SnapshotError::NoSuchSnapshot(name.into()));
    }
    let _guard = store.lock_snapshot(name);
    store.fs().delete(&path)?;
    Ok(())
}

/// When a snapshot was taken, for its age and its calendar timeframe:
/// the timestamp in its name, except
/// - a name dated after `now` (a peer's clock ahead of ours, or a hostile
///   name): its creation time on this node, so a future name can neither
///   live forever nor count as young for longer than it has existed;
/// - a received snapshot (read-only with a received UUID) whose
///   peer-chosen name claims it is older than its arrival here: its
///   arrival, so a peer cannot age it into a timeframe it would hold
///   against ours.
fn taken_for_purge(placed: &Placed, now: NaiveDateTime, dtformat: &str) -> Option<NaiveDateTime> {
    let named = names::parse_timestamp(names::timestamp_of(&placed.name)?, dtformat)?;
    let created = chrono::DateTime::from_timestamp(placed.identity.otime, 0)
        .map(|t| t.with_timezone(&chrono::Local).naive_local());
    if named > now {
        return Some(created.unwrap_or(now).min(now));
    }
    match created {
        Some(arrived) if placed.identity.received_uuid.is_some() && named < arrived => {
            Some(arrived)
        }
        _ => Some(named),
    }
}

/// What a purge asks besides the volume and the pattern.
#[derive(Debug, Clone, Default)]
pub struct PurgeOptions {
    /// Delete nothing.
    pub dry_run: bool,
    /// Evaluate the pattern as of this time (DTFORMAT) instead of now;
    /// only with `dry_run`.
    pub at: Option<String>,
}

/// `VolumeDriver.Snapshots.Purge`: every snapshot of `volume` (markers
/// included) with its fate under `pattern`; the ones not kept are deleted
/// unless `dry_run`.
pub fn purge(
    store: &VolumeStore,
    volume: &str,
    pattern: &Pattern,
    options: &PurgeOptions,
) -> Result<Vec<purge::Decision>> {
    names::check_volume(volume)?;
    let dtformat = &store.config().dtformat;
    let now = match &options.at {
        None => names::local_now(),
        Some(_) if !options.dry_run => return Err(SnapshotError::AtWithoutDryrun),
        Some(at) => names::parse_timestamp(at, dtformat).ok_or_else(|| SnapshotError::BadAt {
            at: at.clone(),
            dtformat: dtformat.clone(),
        })?,
    };
    let candidates: Vec<purge::Candidate> =
        by_creation(store.fs(), &store.config().snapshots_path, volume, true)
            .into_iter()
            .map(|placed| purge::Candidate {
                taken: taken_for_purge(&placed, now, dtformat),
                order: placed.order(),
                received: placed.identity.received_uuid.is_some(),
                name: placed.name,
            })
            .collect();
    let mut decisions = purge::decide(&candidates, pattern, store.config().purge_timeframes, now);
    let cluster = crate::cluster::local::Local::of(store.config());
    for d in decisions
        .iter_mut()
        .filter(|d| cluster.is_diverged(&d.name))
    {
        d.protected.push(purge::Protection::Diverged);
    }
    if !options.dry_run {
        for doomed in decisions.iter().filter(|d| !d.keep()) {
            let path = store.config().snapshots_path.join(&doomed.name);
            let _guard = store.lock_snapshot(&doomed.name);
            store.fs().delete(&path)?;
            tracing::info!(snapshot = %doomed.name, reason = %doomed.reason(), "purged");
        }
    }
    Ok(decisions)
}
