//! What cluster mode shows: the `owner` verb's reply (asks etcd) and the
//! cluster part of `status` and its problems (from this node's own state,
//! no etcd request, so a status scrape costs etcd nothing).

use crate::api::cluster::{ClusterStatus, DivergedState, OwnedVolume, OwnerReply};
use crate::api::status::{Problem, ProblemKind};
use crate::names;

use super::Cluster;

/// `buttervolume owner <volume>`. Blocking.
pub fn owner(cluster: &Cluster, volume: &str) -> OwnerReply {
    let mut reply = OwnerReply {
        name: volume.into(),
        node: cluster.node.clone(),
        known: cluster.local().owner(volume),
        fenced: cluster.local().is_fenced(volume),
        diverged: cluster
            .local()
            .diverged()
            .into_iter()
            .map(|(s, _)| s)
            .filter(|s| names::volume_of(s) == volume)
            .collect(),
        ..Default::default()
    };
    match cluster.wait(cluster.etcd().owner(volume)) {
        Ok(seen) => {
            reply.owner = seen.map(|s| s.record);
            if let Some(r) = &reply.owner {
                reply.owner_alive = cluster.wait(cluster.etcd().alive(&r.node)).ok();
            }
        }
        Err(e) => reply.etcd_error = Some(e.to_string()),
    }
    reply
}

/// The cluster part of `status`.
pub fn status(cluster: &Cluster) -> ClusterStatus {
    let (since_etcd, lease_age) = {
        let l = cluster.liveness();
        let lease_age = l.lease.and(l.lease_since).map(|t| t.elapsed().as_secs());
        (l.etcd_ok.elapsed().as_secs(), lease_age)
    };
    ClusterStatus {
        node: cluster.node.clone(),
        owner_ttl_seconds: cluster.ttl.as_secs(),
        seconds_since_etcd: since_etcd,
        lease_age_seconds: lease_age,
        owned: cluster
            .local()
            .known()
            .into_iter()
            .filter(|(_, r)| r.node == cluster.node && r.mounted)
            .map(|(name, r)| OwnedVolume {
                name,
                epoch: r.epoch,
                since: r.since,
                how: r.how,
            })
            .collect(),
        fenced: cluster.local().fenced(),
        diverged: cluster
            .local()
            .diverged()
            .into_iter()
            .map(|(snapshot, why)| DivergedState { snapshot, why })
            .collect(),
        takeovers: cluster.takeovers(),
    }
}

/// The problems the cluster part shows.
pub fn problems(status: &ClusterStatus) -> Vec<Problem> {
    let fenced = status.fenced.iter().map(|v| Problem {
        kind: ProblemKind::Fenced,
        volume: Some(v.clone()),
        peer: None,
        message: format!(
            "{v} is read-only here: this node lost etcd and its peer, or another node took it over"
        ),
    });
    let diverged = status.diverged.iter().map(|d| Problem {
        kind: ProblemKind::Diverged,
        volume: Some(names::volume_of(&d.snapshot).to_string()),
        peer: None,
        message: format!(
            "{} keeps a diverged state ({}); it is never purged: remove it with buttervolume rm {} once dealt with",
            d.snapshot, d.why, d.snapshot
        ),
    });
    fenced.chain(diverged).collect()
}
