//! One Swarm service definition for both nodes of a pair: each node
//! ignores the `replicate:` line naming itself (by NODE_NAME or by one of
//! its addresses) and replicates to its partner only.

use super::*;

fn node(name: &str, ip: &str) -> SelfHost {
    SelfHost::fixed(name, vec![ip.parse().unwrap()])
}

/// The same two lines on both nodes: each runs only the one to its
/// partner, and its partner is the volume's replicate peer (what follow
/// and cluster mode use). Fails on a scheduler that runs every line.
#[tokio::test]
async fn swarm_pair_each_node_replicates_to_its_partner_only() {
    for (me, partner) in [("10.0.0.1", "10.0.0.2"), ("10.0.0.2", "10.0.0.1")] {
        let h = Harness::on(node("n", me));
        h.schedule(&format!("replicate:{me}"), "1", "data");
        h.schedule(&format!("replicate:{partner}"), "1", "data");
        assert_eq!(h.sched.replicate_peer("data").as_deref(), Some(partner));
        let r = h.tick_at(t0()).await;
        assert_eq!(r.dispatched, 1, "on {me}");
        assert_eq!(h.fake.count(&format!("send data@snap {partner}")), 1);
        assert_eq!(h.fake.count(&format!("send data@snap {me}")), 0);
        // Listed as written, never due here.
        assert_eq!(h.job("data", &format!("replicate:{me}")).next_run, None);
        assert!(h
            .job("data", &format!("replicate:{partner}"))
            .next_run
            .is_some());
    }
}

/// By NODE_NAME (with or without `user@`), case aside; a line naming only
/// this node leaves the volume without a peer.
#[tokio::test]
async fn swarm_pair_a_line_naming_node_name_is_ignored() {
    let h = Harness::on(node("Node-1", "10.0.0.1"));
    h.schedule("replicate:root@node-1", "1", "data");
    assert_eq!(h.sched.replicate_peer("data"), None);
    assert_eq!(h.tick_at(t0()).await.dispatched, 0);
    h.schedule("replicate:node-2", "1", "data");
    assert_eq!(h.sched.replicate_peer("data").as_deref(), Some("node-2"));
    assert_eq!(h.tick_at(t0() + minutes(1)).await.dispatched, 1);
    assert_eq!(h.fake.count("send data@snap node-2"), 1);
}

/// Three storage nodes with one definition: a volume's replicate hosts
/// are every line but this node's, in the schedule's order (the first is its pair peer; a takeover lists the others for a newer
/// replica).
#[tokio::test]
async fn swarm_pair_the_replicate_hosts_are_every_other_node_in_order() {
    let h = Harness::on(node("n2", "10.0.0.2"));
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        h.schedule(&format!("replicate:{ip}"), "1", "data");
    }
    assert_eq!(h.sched.replicate_peers("data"), ["10.0.0.1", "10.0.0.3"]);
    assert_eq!(h.sched.replicate_peer("data").as_deref(), Some("10.0.0.1"));
    assert!(h.sched.replicate_peers("other").is_empty());
}

/// Replication under a minute: `cron:` with a leading seconds field.
#[tokio::test]
async fn swarm_pair_replicates_every_few_seconds_with_a_cron_timer() {
    let h = Harness::on(node("n1", "10.0.0.1"));
    h.schedule("replicate:10.0.0.1", "cron:*/5 * * * * *", "data");
    h.schedule("replicate:10.0.0.2", "cron:*/5 * * * * *", "data");
    let seconds = |s| TimeDelta::seconds(s);
    // t0 is on a whole minute: the first occurrence after it is 5 s later.
    assert_eq!(h.tick_at(t0()).await.next_due, Some(t0() + seconds(5)));
    assert_eq!(h.tick_at(t0() + seconds(5)).await.dispatched, 1);
    assert_eq!(h.tick_at(t0() + seconds(10)).await.dispatched, 1);
    assert_eq!(h.fake.count("send data@snap 10.0.0.2"), 2);
    assert_eq!(h.fake.count("send data@snap 10.0.0.1"), 0);
}
