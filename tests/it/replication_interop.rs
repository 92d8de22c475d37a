//! Interoperability with a node running the reference buttervolume 3.13
//! (Python, from PyPI): its daemon runs in its own node, its sshd runs any
//! command (no forced command, as reference nodes are set up), and it sends
//! with `btrfs send | ssh host "btrfs receive <dir>"`. Both directions,
//! full then incremental.

use std::path::PathBuf;

use serde_json::json;
use testkit::nodes::Nodes;

fn identity(path: PathBuf) -> buttervolume::btrfs::SubvolumeIdentity {
    buttervolume::btrfs::identity(&path).unwrap()
}

#[test]
fn we_send_to_a_reference_node_and_it_sends_to_us() {
    let n = Nodes::up("ri", 2, "2G");
    let (ours, theirs) = (n.name(1), n.name(2));
    // The second node runs the reference daemon instead of ours.
    n.stop(&theirs);
    let out = testkit::nodes::nodes_sh(&[
        "daemon-start",
        &theirs,
        &testkit::reference_bin().display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    n.pair_with(&ours, &theirs, "none");
    n.pair(&theirs, &ours);
    let (ours_ip, theirs_ip) = (n.ip(&ours), n.ip(&theirs));

    // Ours -> reference: full, then incremental (parent from the marker).
    n.ok(&ours, "/VolumeDriver.Create", json!({"Name": "db"}));
    std::fs::write(n.data(&ours).join("volumes/db/one"), "1").unwrap();
    let s1 = n.snapshot(&ours, "db");
    let summary = n.send(&ours, &s1, &theirs_ip);
    assert!(summary.contains("in full"), "{summary}");
    let landed = n.data(&theirs).join("snapshots").join(&s1);
    assert_eq!(std::fs::read_to_string(landed.join("one")).unwrap(), "1");
    let local1 = identity(n.data(&ours).join("snapshots").join(&s1));
    assert_eq!(
        identity(landed.clone()).received_uuid,
        Some(local1.uuid.clone())
    );

    std::fs::write(n.data(&ours).join("volumes/db/two"), "2").unwrap();
    let s2 = n.snapshot(&ours, "db");
    let summary = n.send(&ours, &s2, &theirs_ip);
    assert!(
        summary.contains(&format!("incrementally from {s1}")),
        "{summary}"
    );
    let landed2 = n.data(&theirs).join("snapshots").join(&s2);
    assert_eq!(std::fs::read_to_string(landed2.join("two")).unwrap(), "2");
    assert_eq!(identity(landed2).parent_uuid, Some(identity(landed).uuid));
    // The reference node can restore what we sent: it is a normal snapshot.
    n.ok(
        &theirs,
        "/VolumeDriver.Snapshot.Restore",
        json!({"Name": s2}),
    );
    assert_eq!(
        std::fs::read_to_string(n.data(&theirs).join("volumes/db/two")).unwrap(),
        "2"
    );

    // Reference -> ours: its literal `btrfs receive <dir>` through our forced
    // command, full then incremental (its own marker logic picks the parent).
    n.ok(&theirs, "/VolumeDriver.Create", json!({"Name": "rv"}));
    std::fs::write(n.data(&theirs).join("volumes/rv/a"), "a").unwrap();
    let r1 = n.snapshot(&theirs, "rv");
    n.send(&theirs, &r1, &ours_ip);
    let got1 = n.data(&ours).join("snapshots").join(&r1);
    assert_eq!(std::fs::read_to_string(got1.join("a")).unwrap(), "a");
    std::fs::write(n.data(&theirs).join("volumes/rv/b"), "b").unwrap();
    let r2 = n.snapshot(&theirs, "rv");
    n.send(&theirs, &r2, &ours_ip);
    let got2 = n.data(&ours).join("snapshots").join(&r2);
    assert_eq!(std::fs::read_to_string(got2.join("b")).unwrap(), "b");
    assert_eq!(
        identity(got2).parent_uuid,
        Some(identity(got1).uuid),
        "not incremental"
    );
    // Nothing hidden left behind on our side.
    let hidden: Vec<String> = testkit::entries(&n.data(&ours).join("snapshots"))
        .into_iter()
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}
