//! What a takeover finds and restores: the freshest replica of the volume
//! here, how far it lags the dead owner's last recorded snapshot (the data
//! a failover may lose), and the restore itself. Also the replica records
//! each node keeps in etcd ([`records::ReplicaRecord`]).

use super::records::format_time;
use super::records::{self, ReplicaRecord};
use super::{Cluster, ClusterError};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::replication::protocol::{by_peer_creation, ListedSnapshot};
use crate::replication::pull;
use crate::snapshots::{self, Placed, RestoreOptions, SnapshotError};
use crate::volumes::VolumeStore;

/// The newest snapshot of `volume` here (btrfs creation order), diverged
/// states left out.
pub fn newest_here(cluster: &Cluster, store: &VolumeStore, volume: &str) -> Option<Placed> {
    here(cluster, store, volume).0
}

/// One scan of this node's snapshots of `volume`: the newest (as
/// [`newest_here`]) and the identities ([`key_of`]) of all of them.
fn here(cluster: &Cluster, store: &VolumeStore, volume: &str) -> (Option<Placed>, Vec<String>) {
    let placed = snapshots::by_creation(store.fs(), &store.config().snapshots_path, volume, false);
    let keys = placed.iter().map(key_of).collect();
    let newest = placed
        .into_iter()
        .rfind(|p| !cluster.local().is_diverged(&p.name));
    (newest, keys)
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

/// How long listing the other hosts may take at a takeover: each host is
/// listed in its own thread, and one that has not answered by then (the
/// dead owner's, a cut link) is left behind.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// Before a takeover of `volume` from `from`: when etcd's replica records
/// show a third node's newest snapshot is not here, lists `hosts` (this
/// node's other replicate hosts for the volume) and pulls from one that
/// is ahead of this node ([`ahead`]: by identity and its own btrfs
/// order, never by clocks), preferring one that holds `from`'s last
/// recorded snapshot. Returns what was pulled, for the takeover's line;
/// `None` when nothing is to be pulled or it could not be (logged: the
/// takeover goes on with the state here, and [`check_lag`] says what that
/// lags).
pub fn pull_newer(
    cluster: &Cluster,
    store: &VolumeStore,
    volume: &str,
    from: &str,
    hosts: &[String],
) -> Option<String> {
    let replicas = match cluster.wait(cluster.etcd().replicas(volume)) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(volume, error = %e, "cannot read the replica records: nothing pulled before the takeover");
            return None;
        }
    };
    let (ours, here) = here(cluster, store, volume);
    // Only a third node's record makes it worth listing: the dead owner's
    // own newest, when not here, is lost with it (a pair's usual case,
    // which must not wait on the dead owner's host).
    let elsewhere = replicas
        .iter()
        .any(|(node, r)| *node != cluster.node && node != from && !here.contains(&r.key));
    if !elsewhere {
        return None;
    }
    let owners = replicas
        .iter()
        .find(|(n, _)| n == from)
        .map(|(_, r)| r.key.as_str());
    let listings = list_hosts(cluster, volume, hosts);
    let ahead: Vec<&(String, Vec<ListedSnapshot>)> = listings
        .iter()
        .filter(|(_, listed)| self::ahead(listed, volume, ours.as_ref()))
        .collect();
    let holds = |listed: &[ListedSnapshot], key: &str| {
        listed
            .iter()
            .any(|l| l.uuid == key || l.received_uuid.as_deref() == Some(key))
    };
    let best = owners
        .and_then(|key| ahead.iter().find(|(_, listed)| holds(listed, key)))
        .or(ahead.first())?;
    let host = &best.0;
    match pull::receive(store, host, volume) {
        Ok(report) => {
            let line = format!("pulled {} from {host}", report.snapshot);
            tracing::info!(volume, "{line}, which holds a newer replica");
            Some(line)
        }
        Err(e) => {
            tracing::warn!(volume, host, error = %e, "cannot pull the newer replica: taking over with the state here");
            None
        }
    }
}

/// True when a host's listing of `volume` is ahead of `ours` (this node's
/// newest): its newest, in its own creation order, is not `ours` and comes
/// after `ours` there (or nothing is here). A host that does not hold
/// `ours` cannot be ordered against it, and is not ahead.
fn ahead(listed: &[ListedSnapshot], volume: &str, ours: Option<&Placed>) -> bool {
    let Some(theirs) = by_peer_creation(listed, volume) else {
        return false;
    };
    let Some(newest) = theirs.last() else {
        return false;
    };
    match ours {
        None => true,
        Some(o) => !newest.same_as(&o.identity) && theirs.iter().any(|l| l.same_as(&o.identity)),
    }
}

/// Lists `volume` at each of `hosts` at once, bounded by [`LIST_TIMEOUT`];
/// hosts that fail or are late are left out.
fn list_hosts(
    cluster: &Cluster,
    volume: &str,
    hosts: &[String],
) -> Vec<(String, Vec<ListedSnapshot>)> {
    let (tx, rx) = mpsc::channel();
    for host in hosts {
        let (tx, settings) = (tx.clone(), cluster.ssh().clone());
        let (host, volume) = (host.clone(), volume.to_string());
        // A thread each, left behind if its host does not answer in time.
        std::thread::spawn(move || {
            if let Ok(listed) = pull::list_at(&host, &settings, &volume) {
                let _ = tx.send((host, listed));
            }
        });
    }
    drop(tx);
    let deadline = Instant::now() + LIST_TIMEOUT;
    let mut listings = Vec::new();
    while let Ok(answer) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        listings.push(answer);
    }
    // The schedule's order, whatever order the answers came in.
    listings.sort_by_key(|(h, _)| hosts.iter().position(|x| x == h));
    listings
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
    let (_, here) = here(cluster, store, volume);
    Ok(replicas
        .iter()
        .filter(|(node, _)| *node != cluster.node)
        .all(|(_, r)| here.contains(&r.key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btrfs::SubvolumeIdentity;

    fn listed(name: &str, uuid: &str, received: Option<&str>, order: u64) -> ListedSnapshot {
        ListedSnapshot::example(name, uuid, received, Some(order), &[])
    }

    #[test]
    fn a_host_is_ahead_only_when_it_went_on_from_our_newest_in_its_own_order() {
        // Ours: s1, received from the owner (its uuid "o1").
        let ours = Placed::example(
            "v@s1",
            SubvolumeIdentity::example("h1", 1).received(Some("o1")),
        );
        let s1 = listed("v@s1", "t1", Some("o1"), 1);
        let s2 = listed("v@s2", "t2", Some("o2"), 2);
        assert!(ahead(&[s1.clone(), s2.clone()], "v", Some(&ours)));
        assert!(
            !ahead(std::slice::from_ref(&s1), "v", Some(&ours)),
            "same state"
        );
        assert!(
            !ahead(std::slice::from_ref(&s2), "v", Some(&ours)),
            "cannot be ordered against ours: not pulled on a clock's word"
        );
        // Its creation order, not the listing's order nor the names.
        let older = listed("v@s0", "t0", Some("o0"), 3);
        assert!(ahead(&[s1.clone(), older], "v", Some(&ours)));
        let s1_last = listed("v@s1", "t1", Some("o1"), 9);
        assert!(!ahead(&[s2.clone(), s1_last], "v", Some(&ours)));
        assert!(ahead(&[s2], "v", None), "nothing here: anything is ahead");
        assert!(!ahead(&[], "v", None));
        // Another volume's snapshots do not count.
        assert!(!ahead(
            &[listed("w@s9", "t9", None, 9), s1],
            "v",
            Some(&ours)
        ));
    }
}
