//! The newest snapshot of each volume's subvolume, remembered between
//! rounds, so that "unchanged since" ([`super::current_state`]) costs a
//! flush and two ioctls instead of a scan of the whole snapshots directory
//! (a round over 1,000 volumes with 2,000 snapshots and markers read the
//! directory 2,000 times, and directory reads topped its CPU profile: the
//! round went from 1.90 % to 0.48 % of a core with this, BENCHMARKS.md).
//!
//! Also remembered: what a restore without a backup (the mount-time
//! follow) put in place. The restored volume is a new subvolume with no
//! snapshot of its own, yet it holds its source's state until written: its
//! last Unmount then sends that snapshot (which the peer has: nothing
//! moves) instead of taking and sending a copy of it. A restore that made a
//! backup is not remembered: the backup, newest in this node's creation
//! order, would then stand for the node's state in a peer's eyes, which
//! the next snapshot of the restored volume corrects.
//!
//! Only a hint: what is recalled is checked against btrfs each time (the
//! volume is still the subvolume it was a snapshot of, or the one the
//! restore put in place, not written since, and the snapshot is still
//! there, with the same UUID); anything else falls back to the scan.
//! In memory, in the store that owns them ([`Holders`], one per
//! [`VolumeStore`]), lost with the process (then the restored volume gets
//! its own snapshot, as without the record).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::Placed;
use crate::btrfs::SubvolumeIdentity;
use crate::volumes::VolumeStore;

/// What one store remembers between rounds.
#[derive(Default)]
pub struct Holders {
    /// Volume → its newest snapshot of its subvolume.
    newest: Mutex<HashMap<String, Placed>>,
    /// Volume → the last restore without a backup.
    restored: Mutex<HashMap<String, Restored>>,
}

impl Holders {
    fn newest(&self) -> std::sync::MutexGuard<'_, HashMap<String, Placed>> {
        self.newest.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn restored(&self) -> std::sync::MutexGuard<'_, HashMap<String, Restored>> {
        self.restored.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Remembers `snapshot`, a snapshot of `volume`'s subvolume just taken or
/// found newest.
pub(super) fn note(store: &VolumeStore, volume: &str, snapshot: &Placed) {
    store
        .holders()
        .newest()
        .insert(volume.to_string(), snapshot.clone());
}

/// The remembered snapshot of `volume`, when it still holds the volume's
/// state: `current` (the volume's identity after a flush) is the
/// subvolume it is a snapshot of, not written since, and it still exists.
pub(super) fn recall(
    store: &VolumeStore,
    volume: &str,
    current: &SubvolumeIdentity,
) -> Option<Placed> {
    let known = store.holders().newest().get(volume)?.clone();
    let of_this = known.identity.parent_uuid.as_deref() == Some(current.uuid.as_str());
    if !of_this || current.generation > known.identity.otransid {
        return None;
    }
    still_there(store, known)
}

/// `snapshot`, if it is still in the snapshots dir under its name, with
/// its UUID.
fn still_there(store: &VolumeStore, snapshot: Placed) -> Option<Placed> {
    let path = store.config().snapshots_path.join(&snapshot.name);
    let still = store.fs().identity(&path).ok()?;
    (still.uuid == snapshot.identity.uuid).then_some(snapshot)
}

/// What a restore put in place: the volume's subvolume and its generation
/// right after, and the snapshot it was restored from.
#[derive(Clone)]
struct Restored {
    volume_uuid: String,
    generation: u64,
    source: Placed,
}

/// Remembers that `volume`, now the subvolume `current` (read after a
/// flush), holds `source`'s state, `source` being a snapshot of that volume
/// name.
pub(super) fn note_restored(
    store: &VolumeStore,
    volume: &str,
    current: &SubvolumeIdentity,
    source: &Placed,
) {
    store.holders().restored().insert(
        volume.to_string(),
        Restored {
            volume_uuid: current.uuid.clone(),
            generation: current.generation,
            source: source.clone(),
        },
    );
}

/// Forgets what a restore put in place (another restore replaced it).
pub(super) fn forget_restored(store: &VolumeStore, volume: &str) {
    store.holders().restored().remove(volume);
}

/// The snapshot `volume` was restored from, when the volume (`current`,
/// after a flush) is still the subvolume that restore put in place, not
/// written since, and the snapshot is still there.
pub(super) fn recall_restored(
    store: &VolumeStore,
    volume: &str,
    current: &SubvolumeIdentity,
) -> Option<Placed> {
    let known = store.holders().restored().get(volume)?.clone();
    if known.volume_uuid != current.uuid || current.generation > known.generation {
        return None;
    }
    still_there(store, known.source)
}
