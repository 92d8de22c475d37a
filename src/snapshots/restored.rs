//! What a restore put in place, so that "unchanged since" sees through it.
//!
//! A restore replaces the volume by a new subvolume, a snapshot of the
//! restored snapshot: no snapshot *of that subvolume* exists yet, so the
//! volume would look changed and the next round (or the last Unmount of a
//! followed volume) would snapshot and send a state the peer already
//! holds, and the next restore would back up a copy of it. So a restore of
//! a volume's own history records, in `STATE_PATH/restored/<volume>.json`,
//! the new subvolume's UUID, its generation once flushed, and the snapshot
//! it holds. While the volume is that subvolume at that generation, that
//! snapshot holds its state. A migrate (`restore <snapshot of another
//! volume> <target>`) records nothing: another volume's snapshot never
//! stands for this one. A missing or stale record only means "changed",
//! the safe answer.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Placed;
use crate::btrfs::SubvolumeIdentity;
use crate::fsutil;
use crate::volumes::VolumeStore;

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// The subvolume the restore put in place.
    uuid: String,
    /// Its generation right after, flushed.
    generation: u64,
    /// The snapshot it was restored from.
    source: String,
}

fn record_path(store: &VolumeStore, volume: &str) -> PathBuf {
    store
        .config()
        .state_path
        .join("restored")
        .join(format!("{volume}.json"))
}

/// Records that `path` (volume `volume`) now holds `source`'s state. Best
/// effort: without the record the volume only looks changed.
pub(super) fn remember(store: &VolumeStore, volume: &str, path: &Path, source: &str) {
    let recorded = (|| -> Result<(), Box<dyn std::error::Error>> {
        store.fs().flush(path)?;
        let id = store.fs().identity(path)?;
        let record = Record {
            uuid: id.uuid,
            generation: id.generation,
            source: source.into(),
        };
        let file = record_path(store, volume);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        fsutil::write_atomic(&file, &serde_json::to_vec(&record)?)?;
        Ok(())
    })();
    if let Err(e) = recorded {
        tracing::warn!(volume, error = %e, "cannot record what the restore put in place: the volume will look changed");
    }
}

/// Forgets the record (the volume was restored from elsewhere).
pub(super) fn forget(store: &VolumeStore, volume: &str) {
    let _ = std::fs::remove_file(record_path(store, volume));
}

/// The snapshot whose state the volume holds because a restore put it
/// there and nothing was written since: `current` is the volume's identity
/// after a flush.
pub(super) fn holder(
    store: &VolumeStore,
    volume: &str,
    current: &SubvolumeIdentity,
) -> Option<Placed> {
    let text = std::fs::read(record_path(store, volume)).ok()?;
    let record: Record = serde_json::from_slice(&text).ok()?;
    if record.uuid != current.uuid || current.generation > record.generation {
        return None;
    }
    let path = store.config().snapshots_path.join(&record.source);
    let identity = store.fs().identity(&path).ok()?;
    identity.read_only.then_some(Placed {
        name: record.source,
        identity,
    })
}
