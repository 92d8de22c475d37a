//! Single links cut with iptables in the nodes' own namespaces.

use super::*;

impl Ring {
    /// Drops `node`'s outgoing TCP to `to` on `ports` (`2379:2380`,
    /// `1122`): one link cut, in the node's own network namespace.
    fn cut(&self, node: &str, to: &str, ports: &str) {
        let out = std::process::Command::new("ip")
            .args([
                "netns", "exec", node, "iptables", "-A", "OUTPUT", "-p", "tcp",
            ])
            .args(["-d", to, "--dport", ports, "-j", "DROP"])
            .output()
            .unwrap();
        assert!(out.status.success(), "iptables in {node}: {out:?}");
    }

    fn heal(&self, node: &str) {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", node, "iptables", "-F", "OUTPUT"])
            .output()
            .unwrap();
        assert!(out.status.success(), "iptables in {node}: {out:?}");
    }

    /// Cuts `node` off etcd's quorum: its member hears no other member,
    /// and its client reaches no other member.
    fn cut_from_etcd(&self, node: &str) {
        let c = self.n.name(3);
        let ip = self.n.ip(node);
        for other in [&self.a, &self.b, &c]
            .into_iter()
            .filter(|o| o.as_str() != node)
        {
            self.cut(node, &self.n.ip(other), "2379:2380");
            self.cut(other, &ip, "2379:2380");
        }
    }

    fn heal_all(&self) {
        for k in 1..=3 {
            self.heal(&self.n.name(k));
        }
    }
}

/// Each combination of cut links, one at a time (the table in
/// `src/cluster/mod.rs`): owner–etcd (the owner writes on, its partner
/// does not take over), owner–peer (the owner keeps its lease: Mount
/// refused), peer–etcd (no takeover without etcd); the owner is never
/// fenced, and no Mount on the partner succeeds.
#[test]
fn cluster_each_cut_link_alone_fences_nothing_and_takes_nothing_over() {
    let _one = lock();
    let r = Ring::up("cg", false);
    let (a, b) = (&r.a, &r.b);
    r.volume("v", false, false);
    assert_eq!(r.mount(a, "v", "m1"), "");
    let beyond_a_lease = |node: &str| {
        wait_until(format!("{node} without etcd past a lease"), 60, || {
            r.cluster(node)["SecondsSinceEtcd"].as_u64().unwrap_or(0) > TTL + 2
        });
    };

    // owner–etcd: a's lease expires, a pings b and writes on; b's Mount
    // finds a answering and refuses.
    r.cut_from_etcd(a);
    beyond_a_lease(a);
    assert_eq!(
        r.cluster(a)["Fenced"],
        json!([]),
        "a fenced while b answers"
    );
    let err = r.mount(b, "v", "m2");
    assert!(
        err.contains("still answers") || err.contains("alive"),
        "{err}"
    );
    assert_eq!(r.cluster(a)["Fenced"], json!([]));
    r.heal_all();
    wait_until("a's lease back", 60, || {
        r.cluster(a)["SecondsSinceEtcd"].as_u64().unwrap_or(99) <= TTL / 3 + 1
    });

    // owner–peer: a keeps its lease; b's Mount is refused naming a.
    r.cut(a, &r.b_ip, "1122");
    r.cut(b, &r.a_ip, "1122");
    let err = r.mount(b, "v", "m3");
    assert!(err.contains(&format!("owned by {a}")), "{err}");
    assert_eq!(r.cluster(a)["Fenced"], json!([]));
    r.heal_all();

    // peer–etcd: b cannot take anything over.
    r.cut_from_etcd(b);
    beyond_a_lease(b);
    let err = r.mount(b, "v", "m4");
    assert!(err.contains("etcd"), "{err}");
    assert_eq!(r.cluster(a)["Fenced"], json!([]));
    let owner = r.owner(a, "v")["Owner"].clone();
    assert_eq!(owner["Node"], a.as_str(), "{owner}");
    assert_eq!(owner["Mounted"], true);
}
