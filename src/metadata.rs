//! Per-volume metadata: creation options, the non-migrable flag, Docker
//! labels and the creation time.
//!
//! Why an extended attribute (`trusted.buttervolume`) on the subvolume's
//! root directory rather than a side file or database: the attribute is
//! part of the subvolume itself, so btrfs carries it through every
//! snapshot, every writable snapshot made by restore or clone, and every
//! `btrfs send` / `receive` to the passive node, with no second copy to
//! keep consistent. A volume whose Docker record is lost (buttervolume
//! issue #23) still knows its labels and whether it may move.
//!
//! Why `trusted.`: only a process with CAP_SYS_ADMIN may read or write that
//! namespace, so the container's own user, which owns the volume's root
//! directory, cannot unset `nonmigrable`, turn follow off or forge labels
//! and lineage (it could with `user.`). Releases before this one wrote
//! `user.buttervolume`: the daemon moves each volume's attribute to
//! `trusted.` at start ([`migrate`]) and never decides anything on a
//! volume's `user.` attribute again. Read-only snapshots made before that
//! cannot be rewritten; their `user.` attribute is still read
//! ([`read`]): it was frozen when they were taken.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::btrfs::BtrfsError;
use crate::subvolumes::Subvolumes;

/// Name of the extended attribute holding the JSON metadata.
pub const XATTR: &str = "trusted.buttervolume";

/// Where releases before the move to `trusted.` kept it.
pub const LEGACY_XATTR: &str = "user.buttervolume";

/// The raw metadata of the volume or snapshot at `path`: `trusted.`, or for
/// a read-only snapshot without it (made before [`migrate`]) its frozen
/// `user.` attribute. A writable volume's `user.` attribute is never read:
/// the container can write it.
pub fn read(fs: &dyn Subvolumes, path: &Path) -> Result<Option<Vec<u8>>, BtrfsError> {
    if let Some(value) = fs.get_xattr(path, XATTR)? {
        return Ok(Some(value));
    }
    if fs.identity(path).is_ok_and(|id| id.read_only) {
        return fs.get_xattr(path, LEGACY_XATTR);
    }
    Ok(None)
}

/// Moves the metadata of every volume in `volumes_dir` from `user.` to
/// `trusted.` (at the daemon's start, before any request): a volume that
/// has no `trusted.` attribute gets its `user.` value (or the defaults), so
/// every snapshot taken from now on carries `trusted.`; the `user.`
/// attribute is then removed. Returns how many volumes were migrated.
pub fn migrate(fs: &dyn Subvolumes, volumes_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(volumes_dir) else {
        return 0;
    };
    let mut migrated = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if !fs.is_subvolume(&path) {
            continue;
        }
        let outcome = (|| -> Result<bool, BtrfsError> {
            let legacy = fs.get_xattr(&path, LEGACY_XATTR)?;
            let has_trusted = fs.get_xattr(&path, XATTR)?.is_some();
            if !has_trusted {
                let value = legacy
                    .clone()
                    .unwrap_or_else(|| VolumeMetadata::default().encode());
                fs.set_xattr(&path, XATTR, &value)?;
            }
            if legacy.is_some() {
                fs.remove_xattr(&path, LEGACY_XATTR)?;
            }
            Ok(!has_trusted || legacy.is_some())
        })();
        match outcome {
            Ok(true) => migrated += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot move the volume's metadata to trusted.buttervolume")
            }
        }
    }
    migrated
}

/// The Docker label that marks a volume as bound to its node.
pub const NONMIGRABLE_LABEL: &str = "com.github.mlfmonde.cluster.nonmigrable";

/// The `-o key=value` options a volume was created with: stored and shown
/// (Get, Inspect) as given, a JSON object of strings, and read once, when
/// the metadata is decoded, into what they mean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "BTreeMap<String, String>", into = "BTreeMap<String, String>")]
pub struct VolumeOptions {
    given: BTreeMap<String, String>,
    follow: bool,
}

impl VolumeOptions {
    /// The options as given (values lower-cased at creation).
    pub fn given(&self) -> &BTreeMap<String, String> {
        &self.given
    }

    /// False when created with `-o follow=false`: the volume never follows
    /// its container ([`crate::follow`]); true otherwise.
    pub fn follow(&self) -> bool {
        self.follow
    }
}

impl From<BTreeMap<String, String>> for VolumeOptions {
    fn from(given: BTreeMap<String, String>) -> VolumeOptions {
        let follow = given.get("follow").map(String::as_str) != Some("false");
        VolumeOptions { given, follow }
    }
}

impl From<VolumeOptions> for BTreeMap<String, String> {
    fn from(options: VolumeOptions) -> BTreeMap<String, String> {
        options.given
    }
}

impl Default for VolumeOptions {
    fn default() -> VolumeOptions {
        VolumeOptions::from(BTreeMap::new())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMetadata {
    /// Options given at creation (`docker volume create -o k=v`), normalized.
    #[serde(default)]
    pub options: VolumeOptions,
    /// Set by `-o nonmigrable=true` or by the Docker label.
    #[serde(default)]
    pub nonmigrable: bool,
    /// Docker labels, when the plugin could learn them from the Docker API.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 creation time of the volume.
    #[serde(default)]
    pub created_at: Option<String>,
    /// The states this content descends from: the [`state_key`] of each
    /// snapshot it was restored from, newest first (at most
    /// [`MAX_LINEAGE`]). Snapshots carry it (it is part of the subvolume),
    /// so a peer can tell whether one state descends from another
    /// ([`crate::follow`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<String>,
}

/// How many ancestors a volume remembers.
pub const MAX_LINEAGE: usize = 64;

/// The identity of a state across nodes: a snapshot's UUID where it was
/// made, which every received copy carries as its received UUID (btrfs
/// send passes a received UUID on, so chains of sends keep it).
pub fn state_key(id: &crate::btrfs::SubvolumeIdentity) -> String {
    id.received_uuid.clone().unwrap_or_else(|| id.uuid.clone())
}

/// True for the label values the cluster tooling treats as "yes".
pub fn label_is_true(value: &str) -> bool {
    matches!(value, "True" | "true" | "1" | "TRUE" | "yes")
}

impl VolumeMetadata {
    /// Decodes the attribute's value; a subvolume without the attribute
    /// (made by the reference, or by hand) has default metadata. Malformed
    /// JSON is logged and treated the same way, because `Get` must never
    /// fail for an existing volume. ([`crate::volumes::VolumeStore`] reads
    /// and writes the attribute.)
    pub fn decode(path: &Path, value: Option<Vec<u8>>) -> VolumeMetadata {
        let Some(bytes) = value else {
            return VolumeMetadata::default();
        };
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "ignoring malformed volume metadata");
            VolumeMetadata::default()
        })
    }

    /// The attribute's value.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("metadata serializes")
    }

    /// Records that this content now is a copy of the snapshot with
    /// identity `source` and metadata `source_meta`.
    pub fn descend_from(
        &mut self,
        source: &crate::btrfs::SubvolumeIdentity,
        source_meta: &VolumeMetadata,
    ) {
        let key = state_key(source);
        let older = source_meta.lineage.iter().filter(|k| **k != key).cloned();
        let mut lineage: Vec<String> = std::iter::once(key.clone()).chain(older).collect();
        lineage.truncate(MAX_LINEAGE);
        self.lineage = lineage;
    }

    /// Records Docker's labels; the non-migrable label turns the flag on
    /// (never off: an explicit `-o nonmigrable=true` is not undone by a
    /// missing label).
    pub fn set_labels(&mut self, labels: BTreeMap<String, String>) {
        if labels
            .get(NONMIGRABLE_LABEL)
            .is_some_and(|v| label_is_true(v))
        {
            self.nonmigrable = true;
        }
        self.labels = labels;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The follow option is read once into a flag; the stored JSON is the
    /// options as given, byte for byte as before.
    #[test]
    fn options_keep_their_json_and_read_follow_once() {
        let stored = br#"{"options":{"compression":"zstd","follow":"false"},"nonmigrable":false,"labels":{},"created_at":null}"#;
        let meta = VolumeMetadata::decode(Path::new("v"), Some(stored.to_vec()));
        assert!(!meta.options.follow());
        assert_eq!(meta.options.given()["compression"], "zstd");
        assert_eq!(meta.encode(), stored.to_vec());
        for (json, follow) in [
            (&br#"{"options":{"follow":"true"}}"#[..], true),
            (br#"{"options":{}}"#, true),
            (br#"{}"#, true),
        ] {
            let meta = VolumeMetadata::decode(Path::new("v"), Some(json.to_vec()));
            assert_eq!(meta.options.follow(), follow);
        }
        assert!(VolumeMetadata::default().options.follow());
    }

    #[test]
    fn label_turns_nonmigrable_on() {
        let mut m = VolumeMetadata::default();
        m.set_labels([(NONMIGRABLE_LABEL.to_string(), "True".to_string())].into());
        assert!(m.nonmigrable);
        m.set_labels(BTreeMap::new());
        assert!(m.nonmigrable, "a missing label must not clear the flag");
        let mut m = VolumeMetadata::default();
        m.set_labels([(NONMIGRABLE_LABEL.to_string(), "False".to_string())].into());
        assert!(!m.nonmigrable);
    }

    #[test]
    fn metadata_moves_to_trusted_and_a_volumes_user_attribute_is_never_read() {
        use crate::subvolumes::fake::FakeSubvolumes;
        let dir = tempfile::tempdir().unwrap();
        let fs = FakeSubvolumes::default();
        let (old, bare, new) = (
            dir.path().join("old"),
            dir.path().join("bare"),
            dir.path().join("new"),
        );
        for v in [&old, &bare, &new] {
            fs.create(v).unwrap();
        }
        let flagged = VolumeMetadata {
            nonmigrable: true,
            ..Default::default()
        };
        fs.set_xattr(&old, LEGACY_XATTR, &flagged.encode()).unwrap();
        fs.set_xattr(&new, XATTR, &flagged.encode()).unwrap();
        // A snapshot taken before the move keeps its frozen user. value.
        let frozen = dir.path().join("old@1");
        fs.snapshot(&old, &frozen, true).unwrap();

        assert_eq!(migrate(&fs, dir.path()), 2, "old and bare");
        let meta = |p: &Path| VolumeMetadata::decode(p, read(&fs, p).unwrap());
        assert!(meta(&old).nonmigrable, "the flag survives the move");
        assert_eq!(fs.get_xattr(&old, LEGACY_XATTR).unwrap(), None);
        assert!(fs.get_xattr(&bare, XATTR).unwrap().is_some());
        assert!(meta(&frozen).nonmigrable);
        assert_eq!(migrate(&fs, dir.path()), 0, "once is enough");

        // The container's user rewrites user.buttervolume afterwards: no
        // effect on the volume, nor on a snapshot taken later.
        fs.set_xattr(&new, LEGACY_XATTR, &VolumeMetadata::default().encode())
            .unwrap();
        fs.set_xattr(&bare, LEGACY_XATTR, &flagged.encode())
            .unwrap();
        assert!(meta(&new).nonmigrable);
        assert!(!meta(&bare).nonmigrable);
        let later = dir.path().join("bare@2");
        fs.snapshot(&bare, &later, true).unwrap();
        assert!(!meta(&later).nonmigrable);
    }

    #[test]
    fn unknown_fields_and_missing_fields_are_tolerated() {
        let m: VolumeMetadata = serde_json::from_str(r#"{"nonmigrable":true,"future":1}"#).unwrap();
        assert!(m.nonmigrable);
        assert!(m.labels.is_empty());
    }
}
