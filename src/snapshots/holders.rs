//! The newest snapshot of each volume's subvolume, remembered between
//! rounds, so that "unchanged since" ([`super::current_state`]) costs a
//! flush and two ioctls instead of a scan of the whole snapshots directory
//! (a round over 1,000 volumes with 2,000 snapshots and markers read the
//! directory 2,000 times, and directory reads topped its CPU profile: the
//! round went from 1.90 % to 0.48 % of a core with this, BENCHMARKS.md).
//!
//! Only a hint: what is recalled is checked against btrfs each time (the
//! volume is still the subvolume it was a snapshot of, and the snapshot is
//! still there, with the same UUID); anything else falls back to the scan.
//! In memory, per snapshots directory, lost with the process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use super::Placed;
use crate::btrfs::SubvolumeIdentity;
use crate::volumes::VolumeStore;

/// (snapshots dir, volume) → its newest snapshot of its subvolume.
static NEWEST: Mutex<Option<HashMap<(PathBuf, String), Placed>>> = Mutex::new(None);

fn key(store: &VolumeStore, volume: &str) -> (PathBuf, String) {
    (store.config().snapshots_path.clone(), volume.to_string())
}

/// Remembers `snapshot`, a snapshot of `volume`'s subvolume just taken or
/// found newest.
pub(super) fn note(store: &VolumeStore, volume: &str, snapshot: &Placed) {
    let mut newest = NEWEST.lock().unwrap_or_else(PoisonError::into_inner);
    newest
        .get_or_insert_with(HashMap::new)
        .insert(key(store, volume), snapshot.clone());
}

/// The remembered snapshot of `volume`, when it still holds the volume's
/// state: `current` (the volume's identity after a flush) is the
/// subvolume it is a snapshot of, not written since, and it still exists.
pub(super) fn recall(
    store: &VolumeStore,
    volume: &str,
    current: &SubvolumeIdentity,
) -> Option<Placed> {
    let known = {
        let newest = NEWEST.lock().unwrap_or_else(PoisonError::into_inner);
        newest.as_ref()?.get(&key(store, volume))?.clone()
    };
    let of_this = known.identity.parent_uuid.as_deref() == Some(current.uuid.as_str());
    if !of_this || current.generation > known.identity.otransid {
        return None;
    }
    let path = store.config().snapshots_path.join(&known.name);
    let still = store.fs().identity(&path).ok()?;
    (still.uuid == known.identity.uuid).then_some(known)
}
