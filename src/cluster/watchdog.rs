//! The node's side of cluster mode that runs on its own, as three tasks:
//!
//! - **lease**: one lease per node (granted with its alive key, kept alive
//!   every `OWNER_TTL / 3`, whatever the number of volumes); after each
//!   (re)grant, fenced volumes are reconciled with etcd (unfenced when
//!   still owned here at the same epoch, else their writes kept as a
//!   diverged snapshot); after each keep-alive, the replica records that
//!   changed are written.
//! - **ping**: while etcd is silent, the owner pings the peers of its
//!   mounted volumes ([`super::ping`]).
//! - **fence**: every 250 ms, [`rule::must_fence`] on each volume mounted
//!   here as its owner; a fenced volume's subvolume is made read-only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::etcd::EtcdError;
use super::records::OwnerRecord;
use super::{failover, ping, rule, Cluster};
use crate::volumes::VolumeStore;

/// Starts the three tasks; they end when `stop` turns true.
/// A fence survives a restart: the volumes fenced before (a kill -9
/// between the marker and the ioctl included) are made read-only again
/// first.
pub fn spawn(cluster: Arc<Cluster>, store: Arc<VolumeStore>, stop: watch::Receiver<bool>) {
    for volume in cluster.local().fenced() {
        match make_read_only(&store, &cluster, &volume) {
            Ok(()) => tracing::info!(
                volume,
                "fenced before this start: read-only until etcd says who owns it"
            ),
            Err(e) => {
                tracing::error!(volume, error = %e, "cannot keep the fenced volume read-only")
            }
        }
    }
    tokio::spawn(lease(cluster.clone(), store.clone(), stop.clone()));
    tokio::spawn(pings(cluster.clone(), store.clone(), stop.clone()));
    tokio::spawn(fence(cluster, store, stop));
}

/// Sleeps `d`; false once `stop` turned true.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => !*stop.borrow(),
        _ = stop.changed() => false,
    }
}

/// Runs blocking work (ioctls, SSH) off the runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

async fn lease(cluster: Arc<Cluster>, store: Arc<VolumeStore>, mut stop: watch::Receiver<bool>) {
    let every = cluster.ttl / 3;
    let mut failing = false;
    let mut failures = 0u32;
    loop {
        let sent = Instant::now();
        let lease = { cluster.liveness().lease };
        let result = match lease {
            None => match cluster
                .etcd()
                .grant(&cluster.node, cluster.ttl.as_secs())
                .await
            {
                Ok(id) => {
                    {
                        let mut l = cluster.liveness();
                        l.lease = Some(id);
                        l.lease_since = Some(sent);
                        l.etcd_ok = sent;
                    }
                    tracing::info!(node = %cluster.node, lease = id, "holding a lease in etcd");
                    let (c, s) = (cluster.clone(), store.clone());
                    blocking(move || reconcile(&c, &s)).await;
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Some(id) => match cluster.etcd().keep_alive(id).await {
                Ok(()) => {
                    cluster.liveness().etcd_ok = sent;
                    Ok(())
                }
                Err(e) => {
                    if matches!(e, EtcdError::LeaseExpired) {
                        cluster.liveness().lease = None;
                    }
                    Err(e)
                }
            },
        };
        match result {
            Ok(()) => {
                if failing {
                    tracing::info!("etcd answers again");
                    // The lease held through the silence, so nobody took
                    // anything over: volumes fenced meanwhile are checked
                    // with etcd and made writable again.
                    let (c, s) = (cluster.clone(), store.clone());
                    blocking(move || reconcile(&c, &s)).await;
                }
                failing = false;
                failures = 0;
                let (c, s) = (cluster.clone(), store.clone());
                let changed = blocking(move || changed_replicas(&c, &s))
                    .await
                    .unwrap_or_default();
                for (volume, record) in changed {
                    if cluster
                        .etcd()
                        .put_replica(&volume, &cluster.node, &record)
                        .await
                        .is_ok()
                    {
                        cluster.replicas_put().insert(volume, record.key);
                    }
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "etcd does not answer");
                }
                tracing::debug!(error = %e, failures, "etcd request failed");
                failing = true;
                failures += 1;
                // A pool may keep routing to a member that went away: a
                // fresh one at every failure finds the live members.
                cluster.etcd().reconnect().await;
            }
        }
        let wait = if failing {
            Duration::from_millis(500)
        } else {
            every
        };
        if !pause(&mut stop, wait.saturating_sub(sent.elapsed())).await {
            return;
        }
    }
}

/// The replica records to write: each volume with a snapshot here whose
/// newest changed since the last record written by this process.
fn changed_replicas(
    cluster: &Cluster,
    store: &VolumeStore,
) -> Vec<(String, super::records::ReplicaRecord)> {
    let Ok(volumes) = store.list() else {
        return Vec::new();
    };
    // One scan of the snapshots dir for every volume.
    let dir = &store.config().snapshots_path;
    crate::snapshots::by_creation_of_each(store.fs(), dir, &volumes)
        .into_iter()
        .filter_map(|(v, placed)| {
            let newest = placed.into_iter().rfind(|p| {
                !crate::names::is_marker(&p.name) && !cluster.local().is_diverged(&p.name)
            })?;
            let record = failover::replica_record(&newest);
            let written = cluster.replicas_put().get(&v) == Some(&record.key);
            (!written).then_some((v, record))
        })
        .collect()
}

/// After a (re)grant: each fenced volume is unfenced when etcd says this
/// node still owns it at the epoch it knows; else what it wrote since is
/// kept as a diverged snapshot and it stays read-only. A volume etcd says
/// is mounted here while no container uses it (a daemon killed during a
/// Mount) is released.
fn reconcile(cluster: &Cluster, store: &VolumeStore) {
    if let Ok(records) = cluster.wait(cluster.etcd().owners()) {
        for (volume, r) in &records {
            if r.node == cluster.node && r.mounted && store.mount_count(volume) == 0 {
                tracing::info!(volume, "held in etcd without a container here: released");
                cluster.release(volume);
            }
        }
        fence_taken_over(cluster, store, &records);
    }
    for volume in cluster.local().fenced() {
        let Ok(seen) = cluster.wait(cluster.etcd().owner(&volume)) else {
            return;
        };
        let known = cluster.local().owner(&volume);
        match seen.map(|s| s.record) {
            Some(r) if r.node == cluster.node && known.is_some_and(|k| k.epoch == r.epoch) => {
                match cluster.unfence(store, &volume) {
                    Ok(()) => tracing::info!(
                        volume,
                        epoch = r.epoch,
                        "etcd confirms this node still owns the volume: writable again"
                    ),
                    Err(e) => {
                        tracing::error!(volume, error = %e, "cannot make the volume writable again")
                    }
                }
            }
            Some(r) => {
                let _ = cluster.local().learn(&volume, &r);
                diverge(cluster, store, &volume, &r.node, r.epoch);
            }
            None => {}
        }
    }
}

/// A volume this node last knew it owned, which etcd shows owned by
/// another node at a newer epoch: taken over while this node was down
/// and cut off, before its watchdog could fence it (its daemon killed
/// first, so the fenced loop of [`reconcile`] does not know it). Fenced
/// now, its state kept as diverged: never pushed, never mounted here.
fn fence_taken_over(cluster: &Cluster, store: &VolumeStore, records: &[(String, OwnerRecord)]) {
    for (volume, r) in records {
        let Some(known) = cluster.local().owner(volume) else {
            continue;
        };
        let stale = known.node == cluster.node
            && known.mounted
            && r.node != cluster.node
            && r.epoch > known.epoch;
        if !stale || cluster.local().is_fenced(volume) || store.existing(volume).is_err() {
            continue;
        }
        if let Err(e) = make_read_only(store, cluster, volume) {
            tracing::error!(volume, error = %e, "cannot fence a volume taken over while this node was away");
            continue;
        }
        let _ = cluster.local().learn(volume, r);
        diverge(cluster, store, volume, &r.node, r.epoch);
    }
}

/// Keeps what a fenced volume holds as a diverged snapshot (once).
pub fn diverge(cluster: &Cluster, store: &VolumeStore, volume: &str, owner: &str, epoch: u64) {
    if cluster.local().is_diverged_volume(volume) {
        return;
    }
    match crate::snapshots::snapshot(store, volume) {
        Ok(name) => {
            let why = format!("{volume} was taken over by {owner} (epoch {epoch}); this node's writes since are in {name}");
            let _ = cluster.local().add_diverged(&name, &why);
            let _ = cluster.local().mark_diverged_volume(volume);
            tracing::warn!(volume, snapshot = %name, owner, epoch, "diverged state kept, volume stays read-only");
        }
        Err(e) => tracing::error!(volume, error = %e, "cannot keep the diverged state"),
    }
}

/// Makes `volume` read-only (the marker first: a crash in between still
/// counts it fenced, and the next start finishes the job).
pub fn make_read_only(store: &VolumeStore, cluster: &Cluster, volume: &str) -> std::io::Result<()> {
    let path = store.existing(volume).map_err(std::io::Error::other)?;
    cluster.local().fence(store.fs(), volume, &path)
}

/// The volumes mounted here as their owner, with their peer.
fn owned(cluster: &Cluster) -> Vec<(String, String)> {
    cluster.local().owned_mounted(&cluster.node)
}

async fn pings(cluster: Arc<Cluster>, store: Arc<VolumeStore>, mut stop: watch::Receiver<bool>) {
    let quiet = cluster.ttl / 3 + Duration::from_millis(500);
    loop {
        if !pause(&mut stop, Duration::from_millis(500)).await {
            return;
        }
        if cluster.liveness().etcd_ok.elapsed() < quiet {
            continue;
        }
        let mut peers: Vec<String> = owned(&cluster).into_iter().map(|(_, p)| p).collect();
        peers.sort();
        peers.dedup();
        for peer in peers.into_iter().filter(|p| !p.is_empty()) {
            let sent = Instant::now();
            let c = cluster.clone();
            let host = peer.clone();
            let reply = blocking(move || ping::ping(c.ssh(), &host, &c.node))
                .await
                .flatten();
            let Some(reply) = reply else { continue };
            cluster.liveness().peer_ok.insert(peer.clone(), sent);
            // Volumes the peer knows taken over: fenced now, and the newer
            // owner learned (this node stops pushing them).
            for (volume, (epoch, owner)) in reply.epochs {
                let mine = cluster.local().owner(&volume);
                if !mine.is_some_and(|m| m.node == cluster.node && epoch > m.epoch) {
                    continue;
                }
                tracing::warn!(
                    volume,
                    owner,
                    epoch,
                    "the peer says it took the volume over"
                );
                let (c, s) = (cluster.clone(), store.clone());
                blocking(move || {
                    let learned = OwnerRecord {
                        node: owner,
                        epoch,
                        since: super::records::now(),
                        mounted: true,
                        peer: String::new(),
                        how: "reported by the peer".into(),
                    };
                    let _ = c.local().learn(&volume, &learned);
                    if let Err(e) = make_read_only(&s, &c, &volume) {
                        tracing::error!(volume, error = %e, "cannot fence the volume");
                    }
                })
                .await;
            }
        }
    }
}

async fn fence(cluster: Arc<Cluster>, store: Arc<VolumeStore>, mut stop: watch::Receiver<bool>) {
    loop {
        if !pause(&mut stop, Duration::from_millis(250)).await {
            return;
        }
        let limit = cluster.ttl.saturating_sub(rule::margin(cluster.ttl));
        let quiet = cluster.liveness().etcd_ok.elapsed() >= limit;
        if !quiet {
            continue;
        }
        let owned = owned(&cluster);
        let due: Vec<String> = {
            let l = cluster.liveness();
            let since_etcd = l.etcd_ok.elapsed();
            owned
                .into_iter()
                .filter(|(v, _)| !cluster.local().is_fenced(v))
                .filter(|(_, peer)| {
                    let since_peer = l.peer_ok.get(peer).map(|t| t.elapsed());
                    rule::must_fence(cluster.ttl, since_etcd, since_peer)
                })
                .map(|(v, _)| v)
                .collect()
        };
        for volume in due {
            let (c, s) = (cluster.clone(), store.clone());
            let v = volume.clone();
            match blocking(move || make_read_only(&s, &c, &v)).await {
                Some(Ok(())) => tracing::warn!(
                    volume,
                    "fenced: neither etcd nor the peer answered in time, the volume is read-only"
                ),
                Some(Err(e)) => tracing::error!(volume, error = %e, "cannot fence the volume"),
                None => {}
            }
        }
    }
}
