//! A three-member etcd on nodes of the harness ([`Nodes`]), one member per
//! node (a cut-off node loses quorum, as in production), and the daemons
//! on it in cluster mode: the one definition the cluster, Swarm and
//! deploy-handler tests and the cluster benchmark share.

use serde_json::Value;

use crate::nodes::{nodes_sh, Nodes};
use crate::wait_until;

/// The etcd every member of which runs on one of the nodes.
pub struct Etcd {
    /// The client URLs, `http://<ip>:2379,...`: `BUTTERVOLUME_ETCD_ENDPOINTS`.
    pub endpoints: String,
}

impl Etcd {
    /// Starts a member on each of `members` (node names of `n`) and waits
    /// for its quorum.
    pub fn start(n: &Nodes, members: &[String]) -> Etcd {
        for node in members {
            let mut args = vec!["etcd-start", node.as_str()];
            args.extend(members.iter().map(String::as_str));
            let out = nodes_sh(&args);
            assert!(out.status.success(), "etcd-start {node}: {out:?}");
        }
        let endpoints = members
            .iter()
            .map(|node| format!("http://{}:2379", n.ip(node)))
            .collect::<Vec<_>>()
            .join(",");
        wait_until("etcd's quorum", 60, || {
            n.exec(
                &members[0],
                &["etcdctl", "--endpoints", &endpoints, "endpoint", "health"],
            )
            .status
            .success()
        });
        Etcd { endpoints }
    }

    /// The value of `key`, read with etcdctl from inside `node` (`""`:
    /// no such key); `None` when etcd does not answer there.
    pub fn get(&self, n: &Nodes, node: &str, key: &str) -> Option<String> {
        let args = [
            "etcdctl",
            "--endpoints",
            &self.endpoints,
            "get",
            key,
            "--print-value-only",
        ];
        let out = n.exec(node, &args);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The settings of `node`'s daemon in cluster mode with OWNER_TTL
    /// `ttl` (seconds): endpoints, node name, TTL.
    pub fn settings(&self, node: &str, ttl: u64) -> [String; 3] {
        [
            format!("BUTTERVOLUME_ETCD_ENDPOINTS={}", self.endpoints),
            format!("BUTTERVOLUME_NODE_NAME={node}"),
            format!("BUTTERVOLUME_OWNER_TTL={ttl}"),
        ]
    }

    /// (Re)starts `node`'s daemon in cluster mode with OWNER_TTL `ttl`
    /// and more `KEY=VALUE`s, and waits for its lease.
    pub fn start_daemon(&self, n: &Nodes, node: &str, ttl: u64, env: &[&str]) {
        let _ = nodes_sh(&["daemon-stop", node]);
        let settings = self.settings(node, ttl);
        let mut all: Vec<&str> = settings.iter().map(String::as_str).collect();
        all.extend_from_slice(env);
        n.start_with(node, &all);
        wait_lease(n, node);
    }
}

/// Waits until `node`'s daemon holds a lease etcd confirmed within the
/// second.
pub fn wait_lease(n: &Nodes, node: &str) {
    wait_until(format!("{node}'s lease"), 60, || {
        let c = &cluster(n, node);
        !c["LeaseAgeSeconds"].is_null() && c["SecondsSinceEtcd"].as_u64() == Some(0)
    });
}

/// `node`'s whole status (Null when its daemon does not answer).
pub fn status(n: &Nodes, node: &str) -> Value {
    let (_, text) = crate::raw_request(&n.socket(node), "POST", "/VolumeDriver.Status", b"{}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The cluster part of `node`'s status (Null when its daemon does not
/// answer).
pub fn cluster(n: &Nodes, node: &str) -> Value {
    status(n, node)["Cluster"].clone()
}
