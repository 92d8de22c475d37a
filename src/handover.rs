//! `buttervolume handover <volume> <host>`: move a volume's state to the
//! other node with the shortest downtime, in one call the deploy handler
//! (or an operator) makes twice.
//!
//! - While a container still uses the volume here: pre-sync. Incremental
//!   sends of fresh snapshots, until one moves less than [`SMALL_DELTA`]
//!   (or [`MAX_ROUNDS`] were made): the app keeps running, the peer gets
//!   nearly everything. The reply says `presynced`: stop the app, call
//!   again.
//! - Once no container uses it: the final snapshot (none if unchanged) and
//!   its incremental send, the downtime-critical part, timed. The peer
//!   restores it at the app's first Mount there (follow) or on `restore`.
//!
//! In cluster mode ([`crate::cluster`]) the final phase also hands the
//! volume's ownership to the target's node (next epoch), so its Mount
//! takes it at once.
//!
//! Idempotent and safe to retry after any failure: a snapshot the peer
//! has is not sent again, nothing is deleted here or there, and this node
//! keeps its data (the peer confirms each send before it is recorded).

use std::time::Instant;

use crate::replication::{self, ReplicationError};
use crate::snapshots::{self, SnapshotError};

use crate::volumes::VolumeStore;

/// A pre-sync round that moved less than this is the last one.
pub const SMALL_DELTA: u64 = 16 << 20;

/// Pre-sync rounds at most, whatever they move.
pub const MAX_ROUNDS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("cluster mode: {0} does not answer the ping that names its node, so ownership cannot be handed to it")]
    TargetSilent(String),
}

/// Which half of the handover a call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The app still runs here: the peer is nearly up to date.
    Presynced,
    /// The final state is on the peer.
    HandedOver,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Presynced => "presynced",
            Phase::HandedOver => "handed-over",
        }
    }
}

/// What a call did.
#[derive(Debug, Clone, PartialEq)]
pub struct HandoverReport {
    pub phase: Phase,
    /// The last snapshot sent (the final state when handed over).
    pub snapshot: String,
    pub rounds: usize,
    /// Stream bytes moved by this call.
    pub bytes: u64,
    /// The final snapshot + send (handed over only): the downtime this
    /// plugin adds to a move.
    pub critical_seconds: Option<f64>,
}

/// One round: snapshot if changed, send; returns (snapshot, stream bytes).
fn round(store: &VolumeStore, volume: &str, host: &str) -> Result<(String, u64), HandoverError> {
    let taken = snapshots::snapshot_if_changed(store, volume)?;
    let report = replication::send(store, &taken.name, host, false)?;
    Ok((taken.name, report.bytes))
}

/// See the module doc. Blocking.
pub fn handover(
    store: &VolumeStore,
    volume: &str,
    host: &str,
) -> Result<HandoverReport, HandoverError> {
    crate::names::check_marker_host(host).map_err(ReplicationError::from)?;
    store.existing(volume).map_err(SnapshotError::from)?;
    if store.mount_count(volume) == 0 {
        let started = Instant::now();
        let (snapshot, bytes) = round(store, volume, host)?;
        if let Some(cluster) = store.cluster() {
            // Ownership goes with the final state, at once (no TTL).
            let target = crate::cluster::ping::ping(cluster.ssh(), host, &cluster.node)
                .ok_or_else(|| HandoverError::TargetSilent(host.into()))?;
            let epoch = cluster.hand_to(volume, &target.node)?;
            tracing::info!(volume, to = %target.node, epoch, "handed ownership over");
        }
        return Ok(HandoverReport {
            phase: Phase::HandedOver,
            snapshot,
            rounds: 1,
            bytes,
            critical_seconds: Some(started.elapsed().as_secs_f64()),
        });
    }
    let (mut total, mut rounds) = (0, 0);
    loop {
        let (snapshot, bytes) = round(store, volume, host)?;
        total += bytes;
        rounds += 1;
        if bytes < SMALL_DELTA || rounds == MAX_ROUNDS {
            return Ok(HandoverReport {
                phase: Phase::Presynced,
                snapshot,
                rounds,
                bytes: total,
                critical_seconds: None,
            });
        }
    }
}
