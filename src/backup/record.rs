//! What this node remembers of its backups, per target, in
//! `STATE_PATH/backups/<target>.json`: each volume's last backup (or last
//! error), the size of each backup it made, and the last check. Read by
//! `backups` (sizes), `status` and the metrics; by `backup` for the parent
//! of the next backup ([`Record::last_known`]) and by `restore-backup` for
//! the snapshot name of a backup it restored ([`Record::snapshot_of`]).
//! Neither can be wrong for being stale: a parent only steers restic's
//! change detection (one restic no longer has costs a run without it), and
//! an id names the content of its restic snapshot, tags included. A lost
//! file loses those figures and costs a full read of the next backup (the
//! repository is the truth; whether it holds a snapshot is always asked
//! there).
//!
//! Updates are read-modify-write under an advisory lock on the file's
//! `.lock` sibling and written atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TargetName;

/// One target's record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    #[serde(default)]
    pub volumes: BTreeMap<String, VolumeRecord>,
    /// Restic snapshot id (short, 8 hex digits) -> bytes of the volume
    /// backed up.
    #[serde(default)]
    pub sizes: BTreeMap<String, u64>,
    #[serde(default)]
    pub check: Option<CheckRecord>,
    /// Restic snapshot id (short) -> the local snapshot it holds, for the
    /// backups this node made.
    #[serde(default)]
    pub snapshots: BTreeMap<String, String>,
}

/// A volume's backups to one target, as last seen.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// The last successful backup (or skip: the target held it).
    pub last: Option<Done>,
    /// The last failure, with its time (RFC 3339), when after `last`.
    pub error: Option<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done {
    pub snapshot: String,
    pub id: String,
    /// When it was made or found there (RFC 3339).
    pub time: String,
    pub bytes: u64,
    /// Bytes the repository grew by (0 when skipped).
    pub added: u64,
    /// The target's `RESTIC_REPOSITORY` then: a target file pointed at
    /// another repository gives no parent from this record.
    #[serde(default)]
    pub repository: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckRecord {
    pub time: String,
    pub ok: bool,
    pub detail: String,
}

/// restic's short id of an id (the sizes' key).
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

impl Record {
    /// The size of backup `id` (long or short), when this node made it.
    pub fn size_of(&self, id: &str) -> Option<u64> {
        self.sizes.get(short(id)).copied()
    }

    /// The local snapshot backup `id` (long or short) holds, when this
    /// node made it.
    pub fn snapshot_of(&self, id: &str) -> Option<&str> {
        self.snapshots.get(short(id)).map(String::as_str)
    }

    /// `volume`'s last backup to `repository`, as this node recorded it
    /// (a record from before the repository was noted counts: a parent
    /// restic does not have costs one more run, never a wrong backup).
    pub fn last_known(&self, volume: &str, repository: &str) -> Option<&Done> {
        self.volumes
            .get(volume)?
            .last
            .as_ref()
            .filter(|d| d.repository.as_deref().is_none_or(|r| r == repository))
    }
}

fn path(state: &Path, target: &TargetName) -> PathBuf {
    state.join("backups").join(format!("{target}.json"))
}

/// The record of `target` (empty when none).
pub fn load(state: &Path, target: &TargetName) -> Record {
    std::fs::read(path(state, target))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Every target's record this node has.
pub fn all(state: &Path) -> BTreeMap<String, Record> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(state.join("backups"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Some(name) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".json"))
            .map(str::to_string)
        else {
            continue;
        };
        if let Ok(target) = TargetName::parse(&name) {
            out.insert(name, load(state, &target));
        }
    }
    out
}

fn update(state: &Path, target: &TargetName, change: impl FnOnce(&mut Record)) {
    let file = path(state, target);
    let result = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(file.parent().expect("has a parent"))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(file.with_extension("lock"))?;
        let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| std::io::Error::from(e))?;
        let mut record = load(state, target);
        change(&mut record);
        let bytes = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
        crate::fsutil::write_atomic(&file, &bytes)
    })();
    if let Err(e) = result {
        tracing::warn!(file = %file.display(), error = %e, "cannot record the backup's outcome");
    }
}

fn now() -> String {
    chrono::Local::now().to_rfc3339()
}

/// Notes a backup made (or found in the target).
pub fn note_done(state: &Path, target: &TargetName, volume: &str, done: Done) {
    update(state, target, |r| {
        if done.added > 0 || !r.sizes.contains_key(short(&done.id)) {
            r.sizes.insert(short(&done.id).to_string(), done.bytes);
        }
        r.snapshots
            .insert(short(&done.id).to_string(), done.snapshot.clone());
        let v = r.volumes.entry(volume.to_string()).or_default();
        v.last = Some(done);
        v.error = None;
    });
}

/// Notes a failed backup.
pub fn note_error(state: &Path, target: &TargetName, volume: &str, error: &str) {
    update(state, target, |r| {
        r.volumes.entry(volume.to_string()).or_default().error = Some((now(), error.to_string()));
    });
}

/// Forgets the sizes of backups thinned away.
pub fn forget(state: &Path, target: &TargetName, ids: &[String]) {
    update(state, target, |r| {
        for id in ids {
            r.sizes.remove(short(id));
            r.snapshots.remove(short(id));
        }
    });
}

/// Notes a check's outcome (its last line, or the error).
pub fn note_check(state: &Path, target: &TargetName, outcome: Result<String, String>) {
    update(state, target, |r| {
        r.check = Some(match outcome {
            Ok(detail) => CheckRecord {
                time: now(),
                ok: true,
                detail,
            },
            Err(detail) => CheckRecord {
                time: now(),
                ok: false,
                detail,
            },
        });
    });
}

/// The time to record for a backup done now.
pub fn stamp() -> String {
    now()
}
