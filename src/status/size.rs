//! Volume sizes, measured in the background and only when a volume changed.
//!
//! Why this way: btrfs has no cheap per-subvolume figure. Quota groups
//! would give one, but they are usually off (and costly on every write
//! when on); libbtrfsutil has nothing else; the root item's `bytes_used`
//! counts metadata only. So the size is what `du -s` would say: the sum of
//! `st_blocks` over a walk of the volume (hard links once, nested
//! subvolumes and mounts skipped), extents shared with snapshots counted
//! in full. A walk costs one `lstat` per file, far too much to do while a
//! status request or a scrape waits on a big volume, so:
//!
//! - a request only *reads* the last measurement ([`SizeCache::lookup`],
//!   one `identity` ioctl per volume, which status reads anyway);
//! - a volume whose btrfs generation moved since its last measurement (it
//!   was written to and the transaction committed; btrfs commits at least
//!   every 30 s) is queued, and one background thread measures the queue,
//!   one volume at a time, never two walks at once;
//! - an unchanged volume is never walked again, however often status is
//!   asked: an idle node costs nothing.
//!
//! So a size can be out of date by one measurement: status says when it
//! was measured and whether the volume changed since (`SizeStale`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use crate::volumes::VolumeStore;

/// The last measurement of a volume, as a lookup sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub bytes: u64,
    pub measured_at: DateTime<Utc>,
    /// The volume changed since (a new measurement is queued).
    pub stale: bool,
}

#[derive(Debug, Clone, Copy)]
struct Measured {
    /// The volume's generation when the walk started.
    generation: u64,
    bytes: u64,
    measured_at: DateTime<Utc>,
}

#[derive(Default)]
struct State {
    measured: HashMap<String, Measured>,
    pending: BTreeSet<String>,
}

/// See the module doc.
#[derive(Default)]
pub struct SizeCache {
    state: Mutex<State>,
    /// A background measurer is running.
    walking: AtomicBool,
}

impl SizeCache {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last measurement of `volume`, whose generation is now
    /// `generation`; queues a new measurement when there is none or the
    /// volume changed since.
    pub fn lookup(&self, volume: &str, generation: u64) -> Option<Seen> {
        let mut state = self.lock();
        let last = state.measured.get(volume).copied();
        let stale = last.is_none_or(|m| m.generation != generation);
        if stale {
            state.pending.insert(volume.to_string());
        }
        last.map(|m| Seen {
            bytes: m.bytes,
            measured_at: m.measured_at,
            stale,
        })
    }

    /// Forgets the volumes that are not in `volumes` any more.
    pub fn retain(&self, volumes: &[String]) {
        let mut state = self.lock();
        state
            .measured
            .retain(|name, _| volumes.binary_search(name).is_ok());
        state
            .pending
            .retain(|name| volumes.binary_search(name).is_ok());
    }

    /// The volumes waiting for a measurement.
    pub fn pending(&self) -> Vec<String> {
        self.lock().pending.iter().cloned().collect()
    }

    /// Measures every queued volume, one after the other. Blocking.
    pub fn measure_pending(&self, store: &VolumeStore) {
        loop {
            let Some(volume) = self.lock().pending.pop_first() else {
                return;
            };
            let Ok(path) = store.existing(&volume) else {
                self.lock().measured.remove(&volume);
                continue;
            };
            let Ok(identity) = store.fs().identity(&path) else {
                continue;
            };
            let started = std::time::Instant::now();
            match walk_size(&path) {
                Ok(bytes) => {
                    tracing::debug!(
                        volume,
                        bytes,
                        ms = started.elapsed().as_millis() as u64,
                        "volume size measured"
                    );
                    let measured = Measured {
                        generation: identity.generation,
                        bytes,
                        measured_at: Utc::now(),
                    };
                    self.lock().measured.insert(volume, measured);
                }
                Err(e) => tracing::warn!(volume, error = %e, "cannot measure the volume's size"),
            }
        }
    }

    /// Starts measuring the queue on a background thread, unless one is
    /// already doing it.
    pub fn measure_in_background(self: &Arc<Self>, store: Arc<VolumeStore>) {
        if self.lock().pending.is_empty() || self.walking.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("volume-sizes".into())
            .spawn(move || loop {
                me.measure_pending(&store);
                me.walking.store(false, Ordering::SeqCst);
                // Queued after the last pop and before the flag fell: this
                // thread takes it, unless a new one already did.
                if me.lock().pending.is_empty() || me.walking.swap(true, Ordering::SeqCst) {
                    return;
                }
            });
        if let Err(e) = spawned {
            self.walking.store(false, Ordering::SeqCst);
            tracing::warn!(error = %e, "cannot start measuring volume sizes");
        }
    }
}

/// What `du -s` says of the tree at `root`, in bytes: `st_blocks` × 512 of
/// every entry, hard-linked files once, without descending into other
/// filesystems or nested subvolumes (another `st_dev`). Entries that vanish
/// during the walk are skipped.
pub fn walk_size(root: &Path) -> std::io::Result<u64> {
    let top = std::fs::symlink_metadata(root)?;
    let dev = top.dev();
    let mut total = top.blocks() * 512;
    let mut linked = HashSet::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if dir == root => return Err(e),
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            // Not following symlinks.
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.dev() != dev {
                continue;
            }
            if !meta.is_dir() && meta.nlink() > 1 && !linked.insert(meta.ino()) {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(total)
}
