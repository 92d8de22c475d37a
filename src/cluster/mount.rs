//! A volume's first Mount and last Unmount in cluster mode: ownership
//! first ([`Cluster::claim`]), then the state to start from. Every volume
//! has an owner in cluster mode, its name being cluster-wide: the deploy
//! handler's sequences mount a volume before its `replicate:` line exists
//! and drop the line before moving it; its replicate line, when there is
//! one, names the pair peer the owner is checked through and the follow
//! asks.
//!
//! - taken over from a dead owner: the freshest replica here is restored
//!   (the dead peer is not asked), pulled first from another node when
//!   etcd's replica records show it holds a newer one
//!   ([`failover::pull_newer`]);
//! - still in use here (a restart): the state here is the newest, nothing
//!   to ask;
//! - taken (free or released), or released or handed here: the follow
//!   asks the peer as in pair mode;
//!   a peer that cannot answer is not a refusal when etcd's replica
//!   records show every other node's newest snapshot is here.
//!
//! A node that was fenced and now gets the volume back first puts its
//! freshest non-diverged state in place: what it wrote while cut off stays
//! in the diverged snapshot.

use super::{failover, Claimed, Cluster, ClusterError};
use crate::follow::{self, FollowError};
use crate::volumes::VolumeStore;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshots::SnapshotError),
}

/// The first Mount of `volume` (replicated to `peers`, the first its
/// pair peer) here. Blocking.
pub fn before_first_mount(
    cluster: &Cluster,
    store: &VolumeStore,
    volume: &str,
    peers: &[String],
    follows: bool,
) -> Result<(), MountError> {
    let claimed = cluster.claim(store, volume, peers)?;
    let peer = peers.first().map(String::as_str);
    let result = start_from(cluster, store, volume, peer, follows, &claimed);
    if result.is_err() && !matches!(claimed, Claimed::Mine { mounted: true }) {
        // The Mount fails: nobody writes here, the volume is free again.
        cluster.release(volume);
    }
    result
}

fn start_from(
    cluster: &Cluster,
    store: &VolumeStore,
    volume: &str,
    peer: Option<&str>,
    follows: bool,
    claimed: &Claimed,
) -> Result<(), MountError> {
    let was_fenced = cluster.local().is_fenced(volume);
    if was_fenced {
        // No container uses it here (a first Mount) and any diverged
        // state is kept as a snapshot: writable again, so a restore can
        // swap it out (btrfs refuses to move a read-only subvolume).
        cluster.unfence(store, volume)?;
    }
    match claimed {
        Claimed::TookOver { .. } => {
            failover::restore_freshest(cluster, store, volume)?;
        }
        // Still in use here at the epoch etcd confirms (a restart): what
        // is here is the newest state (a fence, if any, was a precaution).
        Claimed::Mine { mounted: true } => {}
        Claimed::Mine { mounted: false } | Claimed::Taken { .. } => {
            // Back from a fence with another node's epoch in between: start
            // from the freshest state that is not the diverged one.
            if was_fenced && matches!(claimed, Claimed::Taken { .. }) {
                failover::restore_freshest(cluster, store, volume)?;
            }
            if let Some(peer) = peer.filter(|_| follows) {
                let followed = follow::before_first_mount(store, peer, volume);
                follow::record(store, volume, followed.as_ref().map(|_| ()));
                match followed {
                    Ok(_) => {}
                    Err(FollowError::Unreachable { .. })
                        if failover::others_newest_here(cluster, store, volume)? =>
                    {
                        tracing::info!(
                            volume,
                            peer,
                            "the peer does not answer, but etcd shows its newest snapshot is here"
                        );
                        failover::restore_freshest(cluster, store, volume)?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(())
}

/// The last Unmount: the follow's final send (when it follows), then the
/// volume is released. Returns the follow's summary.
pub fn after_last_unmount(
    cluster: &Cluster,
    store: &VolumeStore,
    volume: &str,
    peer: Option<&str>,
    follows: bool,
) -> Result<Option<String>, FollowError> {
    let sent = peer
        .filter(|_| follows)
        .map(|peer| follow::after_last_unmount(store, peer, volume));
    if let Some(outcome) = &sent {
        follow::record(store, volume, outcome.as_ref().map(|_| ()));
    }
    cluster.release(volume);
    sent.transpose()
}
