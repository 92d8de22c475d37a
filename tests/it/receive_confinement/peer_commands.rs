//! What a peer may ask of received snapshots: delete only those it sent,
//! no ambiguous parent.

use super::*;

#[test]
fn a_peer_deletes_only_snapshots_it_received() {
    let node = Node::new("confine-delete");
    let vol = node.root.join("volumes/db");
    let snapshots = node.root.join("snapshots");
    // A local snapshot, a restore backup and a sent marker: all made here.
    let local = "db@2026-01-01T00:00:00.000001";
    let backup = "db@2026-01-01T00:00:00.000002";
    let marker = "db@2026-01-01T00:00:00.000001@10.0.0.2";
    for name in [local, backup, marker] {
        buttervolume::btrfs::snapshot(&vol, &snapshots.join(name), true).unwrap();
    }
    // One received from a peer.
    let src = node.root.join("snapshots-src");
    std::fs::create_dir_all(&src).unwrap();
    let received = "db@2026-01-01T00:00:00.000009";
    buttervolume::btrfs::snapshot(&vol, &src.join(received), true).unwrap();
    let (ok, stderr) = node.ssh_command(
        "buttervolume receive",
        &send_stream(&[src.join(received).to_str().unwrap()]),
    );
    assert!(ok, "{stderr}");
    buttervolume::btrfs::delete_subvolume(&src.join(received)).unwrap();

    let literal_dir = snapshots.display().to_string();
    for name in [local, backup, marker] {
        for request in [
            format!("buttervolume delete {name}"),
            format!("btrfs subvolume delete {literal_dir}/{name}"),
        ] {
            let (ok, stderr) = node.ssh_command(&request, b"");
            assert!(!ok, "{request} was accepted");
            let why = if name == marker {
                "is a sent marker"
            } else {
                "not received"
            };
            assert!(stderr.contains(why), "{request}: {stderr}");
            assert!(snapshots.join(name).exists(), "{request} deleted it");
        }
    }
    let (ok, stderr) = node.ssh_command(&format!("buttervolume delete {received}"), b"");
    assert!(ok, "{stderr}");
    assert!(!snapshots.join(received).exists());
}

/// A received UUID is whatever the sender wrote: two snapshots here can
/// claim the same one. An incremental stream on such a UUID is refused,
/// since confinement could otherwise check its paths against another
/// parent than the one `btrfs receive` picks.
#[test]
fn an_ambiguous_parent_is_refused() {
    let node = Node::new("confine-ambiguous");
    let full = |name: &str| {
        let mut s = build::header(1);
        s.extend(first_command(name));
        s.extend(build::command(cmd::END, &[]));
        s
    };
    // Same UUID attribute (first_command's), two names.
    for name in [
        "db@2026-01-01T00:00:00.000001",
        "other@2026-01-01T00:00:00.000001",
    ] {
        let (ok, stderr) = node.ssh_command("buttervolume receive", &full(name));
        assert!(ok, "{name}: {stderr}");
    }
    // Nor can a peer land a twin under a sent marker's name (markers are
    // made here only, and the parent lookup passes over them).
    let marker = "db@2026-01-01T00:00:00.000001@evil";
    let (ok, stderr) = node.ssh_command("buttervolume receive", &full(marker));
    assert!(!ok, "a stream landed {marker}: {stderr}");
    assert!(!node.root.join("snapshots").join(marker).exists());
    let mut incremental = build::header(1);
    incremental.extend(build::command(
        cmd::SNAPSHOT,
        &[
            (attr::PATH, b"db@2026-01-01T00:00:00.000002"),
            (attr::UUID, &[0x6b; 16]),
            (2, &2u64.to_le_bytes()),
            (attr::CLONE_UUID, &[0x5a; 16]),
            (21, &1u64.to_le_bytes()),
        ],
    ));
    incremental.extend(build::command(cmd::END, &[]));
    let (ok, stderr) = node.ssh_command("buttervolume receive", &incremental);
    assert!(!ok, "accepted: {stderr}");
    assert!(
        stderr.contains("claim to be the stream's parent"),
        "{stderr}"
    );
    assert!(!node
        .root
        .join("snapshots/db@2026-01-01T00:00:00.000002")
        .exists());
}
