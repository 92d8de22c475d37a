//! What a takeover finds and restores: the freshest replica of the volume
//! here, how far it lags the dead owner's last recorded snapshot (the data
//! a failover may lose), and the restore itself. Also the replica records
//! each node keeps in etcd ([`records::ReplicaRecord`]).

use super::records::format_time;
use super::records::{self, ReplicaRecord};
use super::{Cluster, ClusterError};
use crate::snapshots::{self, Placed, RestoreOptions, SnapshotError};
use crate::volumes::VolumeStore;

/// The newest snapshot of `volume` here (btrfs creation order), diverged
/// states left out.
pub fn newest_here(cluster: &Cluster, store: &VolumeStore, volume: &str) -> Option<Placed> {
    snapshots::by_creation(store.fs(), &store.config().snapshots_path, volume, false)
        .into_iter()
        .rfind(|p| !cluster.local().is_diverged(&p.name))
}

/// A snapshot's identity across nodes: its received UUID, else its UUID.
fn key_of(placed: &Placed) -> String {
    placed
        .identity
        .received_uuid
        .clone()
        .unwrap_or_else(|| placed.identity.uuid.clone())
}

/// The record of a snapshot here.
pub fn replica_record(placed: &Placed) -> ReplicaRecord {
    ReplicaRecord {
        snapshot: placed.name.clone(),
        key: key_of(placed),
        created: placed.identity.otime,
        recorded: records::now(),
    }
}

/// Before a takeover of `volume` from `from`: how much the replica here
/// lags `from`'s last recorded snapshot; refused beyond
/// `MAX_LAG_ON_FAILOVER`. Returns the line the log and `status` show.
pub fn check_lag(
    cluster: &Cluster,
    store: &VolumeStore,
    volume: &str,
    from: &str,
) -> Result<String, ClusterError> {
    let ours = newest_here(cluster, store, volume);
    let replicas = cluster
        .wait(cluster.etcd().replicas(volume))
        .map_err(|source| ClusterError::Etcd {
            volume: volume.into(),
            source: Box::new(source),
        })?;
    let theirs = replicas.iter().find(|(n, _)| n == from).map(|(_, r)| r);
    let lag = match (theirs, &ours) {
        (Some(t), Some(o)) if t.key == key_of(o) => 0,
        (Some(t), Some(o)) => (t.created - o.identity.otime).max(0),
        (Some(t), None) => (records::now() - t.created).max(0),
        (None, _) => 0,
    };
    if cluster.max_lag > 0 && lag > cluster.max_lag as i64 {
        return Err(ClusterError::TooStale {
            volume: volume.into(),
            owner: from.into(),
            lag,
            max: cluster.max_lag,
        });
    }
    let since = format_time(records::now() - cluster.ttl.as_secs() as i64);
    let state = match &ours {
        Some(o) => format!("state of {}", o.name),
        None => "no snapshot here: empty".into(),
    };
    let lost = match theirs {
        Some(t) if lag > 0 => format!(", {lag}s behind {from}'s last snapshot {}", t.snapshot),
        Some(_) => format!(", {from}'s last snapshot is here"),
        None => String::new(),
    };
    Ok(format!(
        "took over {volume} from {from} (unreachable since {since}), {state}{lost}"
    ))
}

/// After a takeover (or a Mount that resets a stale node): puts the
/// freshest replica here in place. What the volume holds, if it changed
/// since its last snapshot, is kept as a snapshot first. Returns the
/// restored snapshot, if any.
pub fn restore_freshest(
    cluster: &Cluster,
    store: &VolumeStore,
    volume: &str,
) -> Result<Option<String>, SnapshotError> {
    let Some(newest) = newest_here(cluster, store, volume) else {
        return Ok(None);
    };
    let at = snapshots::current_state(store, volume)?;
    if at
        .as_ref()
        .is_some_and(|a| a.identity.uuid == newest.identity.uuid)
    {
        return Ok(None);
    }
    if at.is_none() && !snapshots::is_fresh(store, volume)? {
        snapshots::snapshot_if_changed(store, volume)?;
    }
    let options = RestoreOptions {
        force: false,
        backup: false,
    };
    snapshots::restore_with(store, &newest.name, Some(volume), options)?;
    Ok(Some(newest.name))
}

/// True when every other node's newest snapshot of `volume` recorded in
/// etcd is here too (by identity), or none is recorded.
pub fn others_newest_here(
    cluster: &Cluster,
    store: &VolumeStore,
    volume: &str,
) -> Result<bool, ClusterError> {
    let replicas = cluster
        .wait(cluster.etcd().replicas(volume))
        .map_err(|source| ClusterError::Etcd {
            volume: volume.into(),
            source: Box::new(source),
        })?;
    let here: Vec<String> =
        snapshots::by_creation(store.fs(), &store.config().snapshots_path, volume, false)
            .iter()
            .map(key_of)
            .collect();
    Ok(replicas
        .iter()
        .filter(|(node, _)| *node != cluster.node)
        .all(|(_, r)| here.contains(&r.key)))
}
