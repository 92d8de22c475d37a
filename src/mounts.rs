//! Mount reference counts: which volumes Docker has mounted, per mount ID.
//!
//! Docker gives every mount point a random ID and may call `Mount` twice with
//! the same ID, then `Unmount` once per `Mount`; a volume is in use while any
//! count is above zero. The table is persisted (atomically) in the state dir
//! so a plugin restart does not forget that containers still use a volume,
//! and tagged with the kernel boot ID so that counts from before a reboot,
//! when every container was stopped, are dropped instead of pinning volumes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    boot_id: String,
    /// volume name -> mount ID -> number of outstanding Mount calls
    mounts: BTreeMap<String, BTreeMap<String, u32>>,
}

/// The persisted mount table. All methods are cheap and synchronous.
pub struct MountTable {
    path: PathBuf,
    state: Mutex<Persisted>,
}

fn current_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl MountTable {
    /// Loads the table from `path` (missing, unreadable or from another boot:
    /// start empty, and say so in the log).
    pub fn load(path: &Path) -> MountTable {
        let boot_id = current_boot_id();
        let state = match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice::<Persisted>(&bytes) {
                Ok(p) if p.boot_id == boot_id => p,
                Ok(_) => {
                    tracing::info!("mount counts are from a previous boot; starting with none");
                    Persisted::default()
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable mount table; starting with none");
                    Persisted::default()
                }
            },
            Err(_) => Persisted::default(),
        };
        let mut state = Persisted { boot_id, ..state };
        // Counts under an empty ID came from Mounts without one, which
        // earlier versions counted: they are not Docker's and hold nothing.
        for ids in state.mounts.values_mut() {
            ids.remove("");
        }
        state.mounts.retain(|_, ids| !ids.is_empty());
        MountTable {
            path: path.into(),
            state: Mutex::new(state),
        }
    }

    fn save(&self, state: &Persisted) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(state).expect("mount table serializes");
        write_atomic(&self.path, &bytes)
    }

    /// Records one Mount call for (volume, id).
    pub fn mount(&self, volume: &str, id: &str) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state
            .mounts
            .entry(volume.into())
            .or_default()
            .entry(id.into())
            .or_default() += 1;
        self.save(&state)
    }

    /// Records one Unmount call; unknown pairs are ignored (Docker may
    /// unmount after a plugin restart on another boot).
    pub fn unmount(&self, volume: &str, id: &str) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(ids) = state.mounts.get_mut(volume) else {
            return Ok(());
        };
        if let Some(count) = ids.get_mut(id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                ids.remove(id);
            }
        }
        if ids.is_empty() {
            state.mounts.remove(volume);
        }
        self.save(&state)
    }

    /// Number of outstanding mounts of a volume, all IDs together.
    pub fn count(&self, volume: &str) -> u32 {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .mounts
            .get(volume)
            .map(|ids| ids.values().sum())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_id_and_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mounts.json");
        let table = MountTable::load(&path);
        table.mount("v", "a").unwrap();
        table.mount("v", "a").unwrap();
        table.mount("v", "b").unwrap();
        assert_eq!(table.count("v"), 3);
        table.unmount("v", "a").unwrap();
        let reloaded = MountTable::load(&path);
        assert_eq!(reloaded.count("v"), 2);
        reloaded.unmount("v", "a").unwrap();
        reloaded.unmount("v", "b").unwrap();
        reloaded.unmount("v", "b").unwrap();
        assert_eq!(reloaded.count("v"), 0);
        reloaded.unmount("nope", "x").unwrap();
    }

    #[test]
    fn counts_without_an_id_from_earlier_versions_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mounts.json");
        let body = format!(
            r#"{{"boot_id":"{}","mounts":{{"v":{{"":2,"a":1}},"w":{{"":1}}}}}}"#,
            current_boot_id()
        );
        std::fs::write(&path, body).unwrap();
        let table = MountTable::load(&path);
        assert_eq!(table.count("v"), 1);
        assert_eq!(table.count("w"), 0);
    }

    #[test]
    fn counts_from_another_boot_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mounts.json");
        std::fs::write(&path, r#"{"boot_id":"old","mounts":{"v":{"a":1}}}"#).unwrap();
        assert_eq!(MountTable::load(&path).count("v"), 0);
    }
}
