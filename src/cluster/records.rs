//! What cluster mode keeps in etcd, one definition for every reader and
//! writer: the key layout and the JSON records under it.
//!
//! - `/buttervolume/owner/<volume>`: [`OwnerRecord`], no lease: the owner
//!   and its epoch outlive the owner's lease, so the epoch only grows.
//! - `/buttervolume/alive/<node>`: the node's liveness, bound to its one
//!   lease (kept alive once for all its volumes); gone when the lease
//!   expires.
//! - `/buttervolume/replica/<volume>/<node>`: [`ReplicaRecord`], the newest
//!   snapshot of the volume the node holds.

use serde::{Deserialize, Serialize};

/// Checks a node name (`NODE_NAME`, a ping's sender): 1 to 64 letters,
/// digits, `.`, `_` or `-`, not starting with `.` or `-`.
pub fn check_node(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!("not a node name: {name:?}"))
    }
}

/// Every key cluster mode writes starts with this.
pub const PREFIX: &str = "/buttervolume/";

pub fn owner_key(volume: &str) -> String {
    format!("{PREFIX}owner/{volume}")
}

pub fn owner_prefix() -> String {
    format!("{PREFIX}owner/")
}

pub fn alive_key(node: &str) -> String {
    format!("{PREFIX}alive/{node}")
}

pub fn replica_key(volume: &str, node: &str) -> String {
    format!("{PREFIX}replica/{volume}/{node}")
}

pub fn replica_prefix(volume: &str) -> String {
    format!("{PREFIX}replica/{volume}/")
}

/// Who may write a volume. Changed only by etcd transactions that compare
/// the record's revision, so two nodes never both believe a change of
/// theirs succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OwnerRecord {
    pub node: String,
    /// The fencing token: grows by one at every change of owner.
    pub epoch: u64,
    /// When this owner got the volume (seconds since the epoch).
    pub since: i64,
    /// A container uses the volume on the owner. `false`: the owner
    /// released it at its last Unmount (a Mount elsewhere may take it
    /// without waiting for a lease to expire).
    pub mounted: bool,
    /// The peer the owner replicates the volume to (its pair partner).
    #[serde(default)]
    pub peer: String,
    /// How the owner got it, for `status` and the log ("took over db from
    /// n1 (unreachable since ...), state of ...").
    #[serde(default)]
    pub how: String,
}

#[cfg(test)]
impl OwnerRecord {
    /// A record for unit tests: `node` owns the volume at `epoch`, a
    /// container uses it there, no peer.
    pub(crate) fn for_test(node: &str, epoch: u64) -> OwnerRecord {
        OwnerRecord {
            node: node.into(),
            epoch,
            since: 0,
            mounted: true,
            peer: String::new(),
            how: String::new(),
        }
    }
}

/// The newest snapshot of a volume a node holds (made there or received).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplicaRecord {
    pub snapshot: String,
    /// The snapshot's identity across nodes: its received UUID when it was
    /// received, else its own UUID.
    pub key: String,
    /// The snapshot's creation time as its name's node saw it (seconds).
    pub created: i64,
    /// When this node recorded it (seconds).
    pub recorded: i64,
}

/// Parses a record read back from etcd; `None` for anything else (a
/// record is written by nodes of the cluster, yet a bad one must not crash
/// a Mount).
pub fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A time in seconds since the epoch as `status` prints it.
pub fn format_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_record_round_trips_and_bad_bytes_are_none() {
        let r = OwnerRecord {
            node: "n1".into(),
            epoch: 3,
            since: 10,
            mounted: true,
            peer: "10.0.0.2".into(),
            how: String::new(),
        };
        let bytes = serde_json::to_vec(&r).unwrap();
        assert!(String::from_utf8_lossy(&bytes).contains("\"Epoch\":3"));
        assert_eq!(parse::<OwnerRecord>(&bytes), Some(r));
        assert_eq!(parse::<OwnerRecord>(b"garbage"), None);
    }
}
