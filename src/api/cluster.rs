//! Cluster mode's requests and replies ([`crate::cluster`]): the `owner`
//! verb's endpoint and the cluster part of `status`.

use serde::{Deserialize, Serialize};

pub mod path {
    /// `{"Name": <volume>}` → [`super::OwnerReply`].
    pub const OWNER: &str = "/VolumeDriver.Owner";
}

/// A volume's owner as etcd records it, with what this node knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OwnerReply {
    pub name: String,
    /// This node's `NODE_NAME`.
    pub node: String,
    /// The record in etcd (`None`: never owned, or etcd unreachable: see
    /// `EtcdError`).
    pub owner: Option<crate::cluster::records::OwnerRecord>,
    /// The owner's lease lives.
    pub owner_alive: Option<bool>,
    /// The newest record this node knows (kept locally).
    pub known: Option<crate::cluster::records::OwnerRecord>,
    /// Made read-only here by fencing.
    pub fenced: bool,
    /// Diverged snapshots of the volume kept here.
    pub diverged: Vec<String>,
    pub etcd_error: Option<String>,
}

/// The cluster part of `status` (absent in pair mode).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClusterStatus {
    pub node: String,
    pub owner_ttl_seconds: u64,
    /// Seconds since etcd last confirmed this node's lease.
    pub seconds_since_etcd: u64,
    /// Age of the current lease (`None`: no lease held now).
    pub lease_age_seconds: Option<u64>,
    /// Volumes owned here with a container (the ones fencing guards).
    pub owned: Vec<OwnedVolume>,
    pub fenced: Vec<String>,
    pub diverged: Vec<DivergedState>,
    /// Takeovers this daemon made since it started.
    pub takeovers: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OwnedVolume {
    pub name: String,
    pub epoch: u64,
    pub since: i64,
    /// How this node got it ("took over db from n1 ...").
    pub how: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DivergedState {
    pub snapshot: String,
    pub why: String,
}
