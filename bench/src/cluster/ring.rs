//! The benchmark's three nodes (testkit's `Nodes`, tag `bcl`): `a` and
//! `b` the storage pair (each pairs the other over SSH), `c` the third
//! member of a three-member etcd running on all three (a cut-off node
//! loses quorum, as in production). The daemons start in pair mode
//! (`Nodes::up`); [`Ring::cluster_mode`] restarts them on etcd.

use serde_json::{json, Value};
use testkit::etcd::{self, Etcd};
use testkit::nodes::Nodes;
use testkit::wait_until;

/// A yearly timer: the replicate lines exist (ownership needs an active
/// one) but no scheduled round runs during a measurement.
pub const YEARLY: &str = "cron:0 0 1 1 *";

pub struct Ring {
    pub n: Nodes,
    pub a: String,
    pub b: String,
    pub c: String,
    pub a_ip: String,
    pub b_ip: String,
    pub etcd: Etcd,
}

impl Ring {
    pub fn up(tag: &str) -> Ring {
        let n = Nodes::up(tag, 3, "2G");
        let names = [n.name(1), n.name(2), n.name(3)];
        n.pair(&names[0], &names[1]);
        n.pair(&names[1], &names[0]);
        let etcd = Etcd::start(&n, &names);
        let [a, b, c] = names;
        Ring {
            a_ip: n.ip(&a),
            b_ip: n.ip(&b),
            n,
            a,
            b,
            c,
            etcd,
        }
    }

    /// (Re)starts `node`'s daemon in cluster mode with OWNER_TTL `ttl`
    /// (and more `KEY=VALUE`s), and waits for its lease.
    pub fn cluster_mode(&self, node: &str, ttl: u64, env: &[&str]) {
        self.etcd.start_daemon(&self.n, node, ttl, env);
    }

    /// Waits until `node` holds a lease etcd confirmed within the second.
    pub fn wait_lease(&self, node: &str) {
        etcd::wait_lease(&self.n, node);
    }

    /// The cluster part of `node`'s status (Null when it does not answer).
    pub fn cluster(&self, node: &str) -> Value {
        etcd::cluster(&self.n, node)
    }

    /// Creates `volume` on `node`, replicating to `peer` on `timer`.
    pub fn create(&self, node: &str, volume: &str, peer: &str, timer: &str, follow: bool) {
        let mut o = serde_json::Map::new();
        o.insert(format!("replicate:{peer}"), json!(timer));
        o.insert("follow".into(), json!(follow.to_string()));
        self.n.ok(
            node,
            "/VolumeDriver.Create",
            json!({ "Name": volume, "Opts": o }),
        );
    }

    /// Creates `volume` on both nodes, each replicating to the other
    /// (`a_timer` on a, yearly on b).
    pub fn pair_volume(&self, volume: &str, a_timer: &str, follow: bool) {
        self.create(&self.a, volume, &self.b_ip, a_timer, follow);
        self.create(&self.b, volume, &self.a_ip, YEARLY, follow);
    }

    /// A raw Mount (Docker's shape) of `volume` on `node`: its `Err`.
    pub fn mount(&self, node: &str, volume: &str, id: &str) -> String {
        let body = json!({ "Name": volume, "ID": id });
        let reply = self.n.post(node, "/VolumeDriver.Mount", &body);
        reply["Err"].as_str().unwrap_or_default().to_string()
    }

    /// Mounts `volume` on `a` and lands one replica of it on `b`.
    pub fn owned_on_a_with_replica(&self, volume: &str) {
        let err = self.mount(&self.a, volume, "bench");
        assert!(err.is_empty(), "mount {volume} on {}: {err}", self.a);
        let snap = self.n.snapshot(&self.a, volume);
        self.n.send(&self.a, &snap, &self.b_ip);
    }

    /// Brings `a` back after a loss: link up, daemon (re)started in
    /// cluster mode when it was killed, lease held again.
    pub fn a_back(&self, killed: bool, ttl: u64) {
        self.n.link(&self.a, "up");
        if killed {
            self.cluster_mode(&self.a.clone(), ttl, &[]);
        } else {
            self.wait_lease(&self.a);
        }
        // etcd's member on a back in the quorum.
        wait_until("a's etcd member healthy", 60, || {
            self.n
                .exec(&self.a, &["etcdctl", "endpoint", "health"])
                .status
                .success()
        });
    }

    /// The daemon's pid on `node`.
    pub fn pid(&self, node: &str) -> u32 {
        std::fs::read_to_string(format!("/run/bvnodes/{node}/daemon.pid"))
            .expect("daemon pid file")
            .trim()
            .parse()
            .expect("a pid")
    }

    /// Lines of a file of the node's data dir, read inside the node
    /// (works while its daemon is down).
    pub fn read(&self, node: &str, path: &str) -> Option<String> {
        let out = self
            .n
            .exec(node, &["cat", &format!("/var/lib/buttervolume/{path}")]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
