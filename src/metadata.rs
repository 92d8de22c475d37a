//! Per-volume metadata: creation options, the non-migrable flag, Docker
//! labels and the creation time.
//!
//! Why an extended attribute (`user.buttervolume`) on the subvolume's root
//! directory rather than a side file or database: the attribute is part of
//! the subvolume itself, so btrfs carries it through every snapshot, every
//! writable snapshot made by restore or clone, and every `btrfs send` /
//! `receive` to the passive node, with no second copy to keep consistent.
//! A volume whose Docker record is lost (buttervolume issue #23) still knows
//! its labels and whether it may move.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Name of the extended attribute holding the JSON metadata.
pub const XATTR: &str = "user.buttervolume";

/// The Docker label that marks a volume as bound to its node.
pub const NONMIGRABLE_LABEL: &str = "com.github.mlfmonde.cluster.nonmigrable";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMetadata {
    /// Options given at creation (`docker volume create -o k=v`), normalized.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
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
    fn unknown_fields_and_missing_fields_are_tolerated() {
        let m: VolumeMetadata = serde_json::from_str(r#"{"nonmigrable":true,"future":1}"#).unwrap();
        assert!(m.nonmigrable);
        assert!(m.labels.is_empty());
    }
}
