//! Three storage nodes: the owner replicates to its pair peer and to a
//! third node, which received a newer snapshot than the peer before the
//! owner died. Only the pair peer may take the volume over, and it pulls
//! the third node's newer replica first.

use super::*;

#[test]
fn cluster_a_takeover_pulls_a_newer_replica_from_a_third_node_and_only_the_pair_peer_takes_over() {
    let _one = lock();
    let r = Ring::up("cg", false);
    let (a, b, c) = (r.a.clone(), r.b.clone(), r.n.name(3));
    for (from, to) in [(&a, &c), (&c, &a), (&b, &c), (&c, &b)] {
        r.n.pair(from, to);
    }
    r.restart(&c);
    let ips: Vec<String> = [&a, &b, &c].iter().map(|x| r.n.ip(x)).collect();
    // One definition on every node (as a Swarm service gives): each node
    // ignores the line naming itself.
    let mut o = serde_json::Map::new();
    for ip in &ips {
        o.insert(format!("replicate:{ip}"), json!(YEARLY));
    }
    for node in [&a, &b, &c] {
        r.n.ok(
            node,
            "/VolumeDriver.Create",
            json!({ "Name": "v", "Opts": o }),
        );
    }
    assert_eq!(r.mount(&a, "v", "m1"), "");
    // The owner's pair peer is the first of its lines; the other node is
    // the third.
    let peer_ip = r.owner(&a, "v")["Owner"]["Peer"]
        .as_str()
        .unwrap()
        .to_string();
    let (p, t, t_ip) = if peer_ip == ips[1] {
        (b.clone(), c.clone(), ips[2].clone())
    } else {
        assert_eq!(peer_ip, ips[2], "the owner's peer is one of its lines");
        (c.clone(), b.clone(), ips[1].clone())
    };
    let write = |text: &str| {
        let line = format!("echo {text} > /var/lib/buttervolume/volumes/v/f");
        assert!(r.n.exec(&a, &["sh", "-c", &line]).status.success());
    };
    write("one");
    let s1 = r.n.snapshot(&a, "v");
    r.n.send(&a, &s1, &peer_ip);
    r.n.send(&a, &s1, &t_ip);
    write("two");
    let s2 = r.n.snapshot(&a, "v");
    r.n.send(&a, &s2, &t_ip);
    // The third node records in etcd that it holds s2.
    let key = format!("/buttervolume/replica/v/{t}");
    wait_until("the third node's replica record", 30, || {
        r.etcd.get(&r.n, &p, &key).is_some_and(|v| v.contains(&s2))
    });

    // The owner's node dies. Its lease expires (etcd renews every lease
    // when it elects a new leader, so this may take more than a TTL when
    // the dead node's member led).
    r.n.kill(&a);
    r.n.link(&a, "down");
    let alive = format!("/buttervolume/alive/{a}");
    wait_until("the dead owner's lease to expire", 60, || {
        r.etcd.get(&r.n, &p, &alive).is_some_and(|v| v.is_empty())
    });

    // The third node may not take it over: the owner could be writing on
    // through its peer's answers.
    let err = r.mount(&t, "v", "m2");
    assert!(
        err.contains(&format!("only its pair peer {peer_ip} may take it over")),
        "{err}"
    );
    assert_eq!(r.owner(&t, "v")["Owner"]["Node"], a.as_str());

    // The pair peer takes it over, with the third node's newer state.
    assert_eq!(r.mount(&p, "v", "m3"), "");
    let f = r.read(&p, "volumes/v/f").unwrap_or_default();
    assert_eq!(f.trim(), "two", "not the freshest replica in the cluster");
    let owner = r.owner(&p, "v")["Owner"].clone();
    assert_eq!(owner["Node"], p.as_str(), "{owner}");
    let how = owner["How"].as_str().unwrap();
    assert!(
        how.contains(&format!("took over v from {a}"))
            && how.contains(&format!("pulled {s2} from {t_ip}"))
            && how.contains(&format!("{a}'s last snapshot is here")),
        "{how}"
    );
}
