//! Cluster mode's figures on the metrics page, from `status`'s cluster
//! part ([`crate::api::cluster::ClusterStatus`]); absent in pair mode.

use super::exposition::{Exposition, Kind};
use crate::api::StatusReply;

pub(super) fn render(page: &mut Exposition, status: &StatusReply) {
    let Some(c) = &status.cluster else {
        return;
    };
    let node = [("node", c.node.as_str())];
    let gauges: [(&str, &str, f64); 5] = [
        (
            "buttervolume_cluster_seconds_since_etcd",
            "Seconds since etcd last confirmed this node's lease.",
            c.seconds_since_etcd as f64,
        ),
        (
            "buttervolume_cluster_lease_age_seconds",
            "Age of this node's current etcd lease (0: none held).",
            c.lease_age_seconds.unwrap_or(0) as f64,
        ),
        (
            "buttervolume_cluster_owned_volumes",
            "Volumes this node owns with a container using them.",
            c.owned.len() as f64,
        ),
        (
            "buttervolume_cluster_fenced_volumes",
            "Volumes made read-only here by fencing.",
            c.fenced.len() as f64,
        ),
        (
            "buttervolume_cluster_diverged_states",
            "Diverged states kept here after a takeover (never purged).",
            c.diverged.len() as f64,
        ),
    ];
    for (name, help, value) in gauges {
        page.family(name, Kind::Gauge, help);
        page.sample(name, &node, value);
    }
    const TAKEOVERS: &str = "buttervolume_cluster_takeovers_total";
    page.family(
        TAKEOVERS,
        Kind::Counter,
        "Volumes this daemon took over from a dead owner since it started.",
    );
    page.sample(TAKEOVERS, &node, c.takeovers as f64);
    const EPOCH: &str = "buttervolume_cluster_owner_epoch";
    page.family(
        EPOCH,
        Kind::Gauge,
        "The epoch (fencing token) of each volume this node owns.",
    );
    for v in &c.owned {
        page.sample(EPOCH, &[("volume", v.name.as_str())], v.epoch as f64);
    }
}
