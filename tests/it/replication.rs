//! Replication between real nodes (network + mount namespaces, loop btrfs,
//! sshd with our forced command, one daemon each): full and incremental
//! sends checked by content and UUIDs, the forced command's refusals, sync.

use std::path::Path;

use serde_json::json;
use testkit::nodes::Nodes;

fn write_file(path: &Path, bytes: usize, seed: u8) {
    let data: Vec<u8> = (0..bytes)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    std::fs::write(path, data).unwrap();
}

fn digest(path: &Path) -> u64 {
    // FNV-1a over the file: enough to tell contents apart in a test.
    std::fs::read(path)
        .unwrap()
        .iter()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ *b as u64).wrapping_mul(0x100000001b3)
        })
}

fn identity(path: &Path) -> buttervolume::btrfs::SubvolumeIdentity {
    buttervolume::btrfs::identity(path).unwrap()
}

#[test]
fn full_then_incremental_sends_with_identity_checks() {
    let (n, a, b, b_ip) = Nodes::sender_and_receiver("rp", "3G");
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "db"}));
    let vol = n.data(&a).join("volumes/db");
    write_file(&vol.join("big"), 8 << 20, 1);

    let s1 = n.snapshot(&a, "db");
    let summary = n.send(&a, &s1, &b_ip);
    assert!(summary.contains("in full"), "{summary}");
    let remote = n.data(&b).join("snapshots").join(&s1);
    assert_eq!(digest(&remote.join("big")), digest(&vol.join("big")));
    let local_id = identity(&n.data(&a).join("snapshots").join(&s1));
    let remote_id = identity(&remote);
    assert!(remote_id.read_only);
    assert_eq!(
        remote_id.received_uuid.as_deref(),
        Some(local_id.uuid.as_str())
    );
    // Sent marker recorded.
    assert!(n
        .data(&a)
        .join("snapshots")
        .join(format!("{s1}@{b_ip}"))
        .exists());
    // The metadata xattr travelled with the data.
    let meta = buttervolume::btrfs::get_xattr(&remote, "trusted.buttervolume").unwrap();
    assert!(meta.is_some(), "metadata did not travel");

    // 20 successive incremental sends, each small and each landing.
    let mut previous = s1.clone();
    for i in 0..20u8 {
        write_file(&vol.join(format!("f{i}")), 64 << 10, i);
        let s = n.snapshot(&a, "db");
        let summary = n.send(&a, &s, &b_ip);
        assert!(
            summary.contains(&format!("incrementally from {previous}")),
            "{summary}"
        );
        let landed = n.data(&b).join("snapshots").join(&s);
        assert_eq!(
            digest(&landed.join(format!("f{i}"))),
            digest(&vol.join(format!("f{i}")))
        );
        // The receiver's copy is a snapshot of its copy of the parent.
        let parent_on_b = identity(&n.data(&b).join("snapshots").join(&previous));
        assert_eq!(
            identity(&landed).parent_uuid.as_deref(),
            Some(parent_on_b.uuid.as_str())
        );
        previous = s;
    }
    // Exactly one marker for b, the newest.
    assert_eq!(n.markers(&a, &b_ip), vec![format!("{previous}@{b_ip}")]);

    // Sending again the same snapshot: already there, nothing streamed.
    let summary = n.send(&a, &previous, &b_ip);
    assert!(summary.contains("already has"), "{summary}");

    // Failover: restore on b from the received snapshot, send back to a
    // incrementally (a's copies are parents by received UUID).
    n.pair(&b, &a);
    let a_ip = n.ip(&a);
    n.ok(
        &b,
        "/VolumeDriver.Snapshot.Restore",
        json!({"Name": previous}),
    );
    write_file(&n.data(&b).join("volumes/db/back"), 4096, 9);
    let sb = n.snapshot(&b, "db");
    let summary = n.send(&b, &sb, &a_ip);
    assert!(summary.contains("incrementally"), "{summary}");
    let back = n.data(&a).join("snapshots").join(&sb);
    assert_eq!(
        digest(&back.join("back")),
        digest(&n.data(&b).join("volumes/db/back"))
    );
}

#[test]
fn test_mode_lands_in_the_received_dir_and_errors_are_clear() {
    let n = Nodes::up("rt", 2, "2G");
    let (a, b) = (n.name(1), n.name(2));
    let b_ip = n.ip(&b);
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "t"}));
    let s = n.snapshot(&a, "t");
    let marker = n.data(&a).join("snapshots").join(format!("{s}@{b_ip}"));
    // Not paired yet: b's host key is unknown here. That error, and no marker.
    assert_eq!(
        n.send_err(&a, &s, &b_ip),
        format!(
            "host key of [{b_ip}]:1122 is not in /root/.ssh/known_hosts: \
             pair the nodes first (scripts/pair-nodes.sh)"
        )
    );
    assert!(!marker.exists());
    // b's host key is known but b does not accept a's key: the other error.
    n.pair(&a, &b);
    let out = n.exec(&b, &["sh", "-c", ": > /root/.ssh/authorized_keys"]);
    assert!(out.status.success(), "{}", testkit::stderr(&out));
    assert_eq!(
        n.send_err(&a, &s, &b_ip),
        "no usable key in /root/.ssh was accepted by the peer"
    );
    assert!(!marker.exists());

    n.pair(&a, &b);
    // The reference's own request (its test suite's) gets exactly the
    // reference's reply: the Summary only comes when asked (`Detail`).
    let reply = n.ok(
        &a,
        "/VolumeDriver.Snapshot.Send",
        json!({"Name": s, "Host": b_ip, "Test": true}),
    );
    assert_eq!(reply, json!({"Err": ""}));
    assert!(n.data(&b).join("received").join(&s).exists());
    assert!(!n.data(&b).join("snapshots").join(&s).exists());

    for (body, expected) in [
        (
            json!({"Name": "t@2000-01-01T00:00:00.000000", "Host": b_ip}),
            "No such snapshot",
        ),
        (json!({"Name": s, "Host": "bad host;id"}), "invalid host"),
        (
            json!({"Name": format!("{s}@{b_ip}"), "Host": b_ip}),
            "marker",
        ),
        (
            json!({"Name": "../x@y", "Host": b_ip}),
            "invalid snapshot name",
        ),
    ] {
        let reply = n.post(&a, "/VolumeDriver.Snapshot.Send", &body);
        let err = reply["Err"].as_str().unwrap();
        assert!(err.contains(expected), "{body}: {err}");
    }
}

#[test]
fn forced_command_refuses_anything_else() {
    let (n, a, b, b_ip) = Nodes::sender_and_receiver("rf", "2G");
    n.ok(&b, "/VolumeDriver.Create", json!({"Name": "precious"}));
    let target = format!("root@{b_ip}");
    for command in [
        "id",
        "btrfs subvolume delete /var/lib/buttervolume/volumes/precious",
        "buttervolume delete ../volumes/precious",
        "btrfs receive /var/lib/buttervolume/snapshots/../volumes",
        "buttervolume list x; id",
        "buttervolume list $(id)",
        "touch /tmp/owned",
        "rsync --server --sender -v . /etc/",
    ] {
        let out = n.exec(
            &a,
            &["ssh", "-p", "1122", "-o", "BatchMode=yes", &target, command],
        );
        assert!(!out.status.success(), "{command:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("refused"), "{command:?}: {err}");
    }
    assert!(n.data(&b).join("volumes/precious").exists());
    assert!(!Path::new("/tmp/owned").exists());
    let log = std::fs::read_to_string(n.data(&b).join("state/ssh-command.log")).unwrap();
    assert!(log.contains("refused"), "{log}");
    // Each refusal names the key that asked (sshd's ExposeAuthInfo), with
    // the fingerprint ssh-keygen gives it.
    let listed = n.exec(&a, &["ssh-keygen", "-lf", "/root/.ssh/id_ed25519.pub"]);
    let fingerprint = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .nth(1)
        .expect("ssh-keygen -l prints a fingerprint")
        .to_string();
    for line in log.lines().filter(|l| l.contains("refused")) {
        assert!(
            line.contains(&format!(" key={fingerprint} ")),
            "not {fingerprint}: {line}"
        );
    }
}

#[test]
fn sync_pulls_a_volume_with_rsync() {
    let (n, a, b, b_ip) = Nodes::sender_and_receiver("rs", "2G");
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "web"}));
    n.ok(&b, "/VolumeDriver.Create", json!({"Name": "web"}));
    n.paused_line(&b, "web", &format!("synchronize:{}", n.ip(&a)));
    // b synchronizes web with a too: a's key may read it there.
    n.paused_line(&b, "web", &format!("synchronize:{}", n.ip(&a)));
    write_file(&n.data(&b).join("volumes/web/remote"), 10000, 3);
    write_file(&n.data(&a).join("volumes/web/local"), 100, 4);
    n.ok(
        &a,
        "/VolumeDriver.Volume.Sync",
        json!({"Volumes": ["web"], "Hosts": [b_ip]}),
    );
    let pulled = n.data(&a).join("volumes/web/remote");
    assert_eq!(
        digest(&pulled),
        digest(&n.data(&b).join("volumes/web/remote"))
    );
    assert!(
        n.data(&a).join("volumes/web/local").exists(),
        "sync deleted a local file"
    );
    let reply = n.post(
        &a,
        "/VolumeDriver.Volume.Sync",
        &json!({"Volumes": ["nope"], "Hosts": [b_ip]}),
    );
    assert!(reply["Err"].as_str().unwrap().contains("no such volume"));
}

#[test]
fn three_nodes_markers_per_host_survive_purge() {
    let n = Nodes::up("r3", 3, "2G");
    let (a, b, c) = (n.name(1), n.name(2), n.name(3));
    n.pair(&a, &b);
    n.pair(&a, &c);
    let (b_ip, c_ip) = (n.ip(&b), n.ip(&c));
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "app"}));
    let vol = n.data(&a).join("volumes/app");
    write_file(&vol.join("x"), 1 << 20, 1);
    // Two snapshots dated long ago, made beside the daemon under its naming
    // rule: by age alone, the purge below deletes both (and any marker of
    // them). s0 was never sent; s1 goes to b and c.
    let snapshots = n.data(&a).join("snapshots");
    let dated = |stamp: &str| {
        let name = format!("app@{stamp}");
        buttervolume::btrfs::snapshot(&vol, &snapshots.join(&name), true).unwrap();
        name
    };
    let s0 = dated("2020-01-01T00:00:00.000000");
    write_file(&vol.join("x1"), 1 << 20, 4);
    let s1 = dated("2020-01-02T00:00:00.000000");
    n.send(&a, &s1, &b_ip);
    n.send(&a, &s1, &c_ip);
    write_file(&vol.join("y"), 1 << 20, 2);
    let s2 = n.snapshot(&a, "app");
    // Only b gets s2: b's marker moves to s2, c's newest stays on s1.
    n.send(&a, &s2, &b_ip);
    assert_eq!(n.markers(&a, &b_ip), vec![format!("{s2}@{b_ip}")]);
    assert_eq!(n.markers(&a, &c_ip), vec![format!("{s1}@{c_ip}")]);

    // Pattern 1h:1d: anything older than a day goes, which by the
    // reference's rule is s0, s1 and s1's marker for c. But s1 and that
    // marker are c's parent for its next send: only s0 is purged.
    for dry_run in [true, false] {
        let reply = n.ok(
            &a,
            "/VolumeDriver.Snapshots.Purge",
            json!({"Name": "app", "Pattern": "1h:1d", "Dryrun": dry_run}),
        );
        if dry_run {
            assert_eq!(reply["Purged"], json!([s0]));
        } else {
            assert_eq!(reply, json!({"Err": ""}));
        }
    }
    assert!(!snapshots.join(&s0).exists(), "s0 was not purged");
    for kept in [&s1, &format!("{s1}@{c_ip}"), &s2, &format!("{s2}@{b_ip}")] {
        assert!(snapshots.join(kept).exists(), "{kept} was purged");
    }
    // Both peers then get incremental sends from their own parents.
    write_file(&vol.join("z"), 1 << 20, 3);
    let s3 = n.snapshot(&a, "app");
    let summary = n.send(&a, &s3, &b_ip);
    assert!(
        summary.contains(&format!("incrementally from {s2}")),
        "{summary}"
    );
    let summary = n.send(&a, &s3, &c_ip);
    assert!(
        summary.contains(&format!("incrementally from {s1}")),
        "{summary}"
    );
    for node in [&b, &c] {
        let landed = n.data(node).join("snapshots").join(&s3);
        assert_eq!(digest(&landed.join("z")), digest(&vol.join("z")));
    }
}

#[test]
fn zstd_on_the_wire_and_bandwidth_limit() {
    let (n, a, b, b_ip) = Nodes::sender_and_receiver("rz", "2G");
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "z"}));
    let vol = n.data(&a).join("volumes/z");
    // Compressible data: 16 MiB of a repeated pattern.
    std::fs::write(vol.join("text"), "buttervolume ".repeat(16 << 20 >> 4)).unwrap();
    let s1 = n.snapshot(&a, "z");
    let reply = n.ok(
        &a,
        "/VolumeDriver.Snapshot.Send",
        json!({"Name": s1, "Host": b_ip, "Compress": true, "Detail": true}),
    );
    let summary = reply["Summary"].as_str().unwrap();
    assert!(summary.contains("on the wire"), "{summary}");
    let landed = n.data(&b).join("snapshots").join(&s1);
    assert_eq!(digest(&landed.join("text")), digest(&vol.join("text")));

    // 8 MiB of incompressible data at 4 MiB/s: at least ~2 s on the wire.
    write_file(&vol.join("noise"), 8 << 20, 5);
    let s2 = n.snapshot(&a, "z");
    let started = std::time::Instant::now();
    n.ok(
        &a,
        "/VolumeDriver.Snapshot.Send",
        json!({"Name": s2, "Host": b_ip, "BwLimit": 4}),
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1800),
        "the limit was not applied: {:?}",
        started.elapsed()
    );
    let landed = n.data(&b).join("snapshots").join(&s2);
    assert_eq!(digest(&landed.join("noise")), digest(&vol.join("noise")));
}

/// `sync` of a volume holding symlinks to a host file and a host directory
/// transfers the links, never their targets; the symlink-following rsync
/// options are refused by the forced command.
#[test]
fn sync_sends_symlinks_as_links_and_refuses_following_them() {
    let (n, a, b, b_ip) = Nodes::sender_and_receiver("rl", "2G");
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "web"}));
    n.ok(&b, "/VolumeDriver.Create", json!({"Name": "web"}));
    n.paused_line(&b, "web", &format!("synchronize:{}", n.ip(&a)));
    // What a container on b could plant: links to b's host files.
    let remote = n.data(&b).join("volumes/web");
    std::os::unix::fs::symlink("/etc/ssh", remote.join("host-dir")).unwrap();
    std::os::unix::fs::symlink("/root/.ssh/authorized_keys", remote.join("host-file")).unwrap();
    n.ok(
        &a,
        "/VolumeDriver.Volume.Sync",
        json!({"Volumes": ["web"], "Hosts": [b_ip]}),
    );
    let local = n.data(&a).join("volumes/web");
    for (link, target) in [
        ("host-dir", "/etc/ssh"),
        ("host-file", "/root/.ssh/authorized_keys"),
    ] {
        let m = std::fs::symlink_metadata(local.join(link)).unwrap();
        assert!(m.file_type().is_symlink(), "{link} arrived as a {m:?}");
        assert_eq!(
            std::fs::read_link(local.join(link)).unwrap(),
            Path::new(target)
        );
    }
    // A client asking the server to follow links is refused, for every
    // option that would.
    let source = format!("root@{b_ip}:/var/lib/buttervolume/volumes/web/");
    for option in [
        "-L",
        "--copy-links",
        "-k",
        "--copy-dirlinks",
        "--copy-unsafe-links",
        "-K",
    ] {
        let out = n.exec(
            &a,
            &[
                "rsync",
                "-a",
                option,
                "-e",
                "ssh -p 1122 -o BatchMode=yes",
                &source,
                "/var/lib/buttervolume/pulled/",
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        // -K is a receiver-side option rsync does not send: the link still
        // arrives as a link; every other one is refused by the server.
        if option == "-K" {
            assert!(out.status.success(), "{option}: {err}");
        } else {
            assert!(!out.status.success(), "{option} accepted");
            assert!(err.contains("refused"), "{option}: {err}");
        }
    }
    let pulled = n.data(&a).join("pulled");
    for link in ["host-dir", "host-file"] {
        let m = std::fs::symlink_metadata(pulled.join(link)).unwrap();
        assert!(m.file_type().is_symlink(), "{link} arrived as a {m:?}");
    }
}

/// `receive <host> <volume>`: the pull. The peer's newest snapshot (in its
/// creation order) lands here, incrementally on what both hold, through
/// the peer's forced command; nothing is restored; an unreachable peer is
/// an error, never "nothing there".
#[test]
fn receive_pulls_the_peers_newest_snapshot() {
    let n = Nodes::up("rv", 2, "2G");
    let (a, b) = (n.name(1), n.name(2));
    n.pair(&a, &b);
    n.pair(&b, &a);
    let (a_ip, b_ip) = (n.ip(&a), n.ip(&b));
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "db"}));
    let vol = n.data(&a).join("volumes/db");
    write_file(&vol.join("one"), 1 << 20, 1);
    let s1 = n.snapshot(&a, "db");
    n.send(&a, &s1, &b_ip);
    // The app writes on on a; b never got that state.
    write_file(&vol.join("two"), 2 << 20, 2);
    let s2 = n.snapshot(&a, "db");

    let reply = n.ok(
        &b,
        "/VolumeDriver.Snapshot.Receive",
        json!({"Name": "db", "Host": a_ip}),
    );
    assert_eq!(reply["Snapshot"], json!(s2), "{reply}");
    let summary = reply["Summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("incrementally from {s1}")),
        "{summary}"
    );
    let landed = n.data(&b).join("snapshots").join(&s2);
    assert_eq!(digest(&landed.join("two")), digest(&vol.join("two")));
    assert_eq!(
        identity(&landed).received_uuid.as_deref(),
        Some(
            identity(&n.data(&a).join("snapshots").join(&s2))
                .uuid
                .as_str()
        )
    );
    assert!(n
        .data(&b)
        .join("snapshots")
        .join(format!("{s2}@{a_ip}"))
        .exists());
    // Nothing was restored: b has no volume db at all.
    assert!(!n.data(&b).join("volumes/db").exists());

    // Again: already here, through the CLI (which prints the name).
    let out = n.cli(&b, &["receive", &a_ip, "db"]);
    assert!(out.status.success(), "{}", testkit::stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{s2}\n"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already here"));

    // a goes on; b pulls again, on s2, which it pulled itself: its marker
    // s2@a (a read-only snapshot of s2, with s2's received UUID) is not
    // taken for a second parent.
    assert!(n
        .data(&b)
        .join("snapshots")
        .join(format!("{s2}@{a_ip}"))
        .exists());
    write_file(&vol.join("three"), 1 << 20, 3);
    let s3 = n.snapshot(&a, "db");
    let reply = n.ok(
        &b,
        "/VolumeDriver.Snapshot.Receive",
        json!({"Name": "db", "Host": a_ip}),
    );
    assert_eq!(reply["Snapshot"], json!(s3), "{reply}");
    let summary = reply["Summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("incrementally from {s2}")),
        "{summary}"
    );
    let landed = n.data(&b).join("snapshots").join(&s3);
    assert_eq!(digest(&landed.join("three")), digest(&vol.join("three")));

    // A volume never sent: in full (a replicates it with b: its line,
    // paused here, lets b's key pull it), and b's key reads nothing else.
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "web"}));
    write_file(&n.data(&a).join("volumes/web/index"), 4096, 3);
    let w1 = n.snapshot(&a, "web");
    let err = n.post(
        &b,
        "/VolumeDriver.Snapshot.Receive",
        &json!({"Name": "web", "Host": a_ip}),
    );
    assert!(
        err["Err"]
            .as_str()
            .unwrap()
            .contains("it has no snapshot of web"),
        "{err}"
    );
    n.paused_line(&a, "web", &format!("replicate:{b_ip}"));
    let reply = n.ok(
        &b,
        "/VolumeDriver.Snapshot.Receive",
        json!({"Name": "web", "Host": a_ip}),
    );
    assert!(
        reply["Summary"].as_str().unwrap().contains("in full"),
        "{reply}"
    );
    assert!(n
        .data(&b)
        .join("snapshots")
        .join(&w1)
        .join("index")
        .exists());

    // Errors: nothing there, bad names, and an unreachable peer.
    let err = |body: serde_json::Value| {
        n.post(&b, "/VolumeDriver.Snapshot.Receive", &body)["Err"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let e = err(json!({"Name": "nothing", "Host": a_ip}));
    assert!(e.contains("has no snapshot of nothing"), "{e}");
    let e = err(json!({"Name": "../x", "Host": a_ip}));
    assert!(e.contains("Invalid characters in volume name"), "{e}");
    let e = err(json!({"Name": "db", "Host": "-oProxyCommand=x"}));
    assert!(e.contains("invalid host"), "{e}");
    n.link(&a, "down");
    let e = err(json!({"Name": "db", "Host": a_ip}));
    n.link(&a, "up");
    assert!(
        e.starts_with(&format!("cannot connect to {a_ip}:1122: ")),
        "{e}"
    );
    // No half-received leftover anywhere.
    let leftovers: Vec<String> = testkit::entries(&n.data(&b).join("snapshots"))
        .into_iter()
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `replicate <host> <volume>`: snapshot now and send; a failed send
/// leaves no fresh snapshot behind.
#[test]
fn replicate_snapshots_and_sends_or_leaves_nothing() {
    let (n, a, b, b_ip) = Nodes::sender_and_receiver("rr", "2G");
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "app"}));
    write_file(&n.data(&a).join("volumes/app/data"), 1 << 20, 5);
    let out = n.cli(&a, &["replicate", &b_ip, "app"]);
    assert!(out.status.success(), "{}", testkit::stderr(&out));
    let snapshot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(snapshot.starts_with("app@"), "{snapshot}");
    let landed = n.data(&b).join("snapshots").join(&snapshot);
    assert_eq!(
        digest(&landed.join("data")),
        digest(&n.data(&a).join("volumes/app/data"))
    );

    let count = || testkit::entries(&n.data(&a).join("snapshots")).len();
    let before = count();
    n.link(&b, "down");
    let reply = n.post(
        &a,
        "/VolumeDriver.Replicate",
        &json!({"Name": "app", "Host": b_ip}),
    );
    n.link(&b, "up");
    assert_ne!(reply["Err"], "", "{reply}");
    assert_eq!(count(), before, "a failed replication left a snapshot");
    let e = n.post(
        &a,
        "/VolumeDriver.Replicate",
        &json!({"Name": "nope", "Host": b_ip}),
    );
    assert!(e["Err"].as_str().unwrap().contains("no such volume"), "{e}");
}

/// Split brain: once the app wrote on b (b made a snapshot of its own), a
/// send from a is refused with the way out; receiving b's state first (or
/// deleting it there) lets a send again, and nothing is lost on either side.
#[test]
fn a_send_to_a_peer_that_moved_on_is_refused() {
    let n = Nodes::up("mo", 2, "2G");
    let (a, b) = (n.name(1), n.name(2));
    n.pair(&a, &b);
    n.pair(&b, &a);
    let b_ip = n.ip(&b);
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "db"}));
    let vol_a = n.data(&a).join("volumes/db");
    write_file(&vol_a.join("one"), 1 << 20, 1);
    let s1 = n.snapshot(&a, "db");
    n.send(&a, &s1, &b_ip);

    // The app moves to b (restore of what a sent) and writes there.
    n.ok(&b, "/VolumeDriver.Snapshot.Restore", json!({"Name": s1}));
    write_file(&n.data(&b).join("volumes/db/on-b"), 1 << 20, 2);
    let sb = n.snapshot(&b, "db");
    // Meanwhile a (cut off, say) wrote too.
    write_file(&vol_a.join("two"), 1 << 20, 3);
    let s2 = n.snapshot(&a, "db");

    let err = n.send_err(&a, &s2, &b_ip);
    assert_eq!(
        err,
        format!(
            "{b_ip} holds {sb}, a newer state of db that this node never saw: the volume there has moved on; receive it first (buttervolume receive {b_ip} db) or delete it there"
        )
    );
    assert!(!n.data(&b).join("snapshots").join(&s2).exists());
    assert!(n.markers(&a, &b_ip).iter().all(|m| !m.starts_with(&s2)));

    // The way out: receive b's state; a keeps its own s2 and can send it.
    n.ok(
        &a,
        "/VolumeDriver.Snapshot.Receive",
        json!({"Name": "db", "Host": b_ip}),
    );
    assert!(n.data(&a).join("snapshots").join(&sb).exists());
    n.send(&a, &s2, &b_ip);
    let on_b = n.data(&b).join("snapshots").join(&s2);
    assert_eq!(digest(&on_b.join("two")), digest(&vol_a.join("two")));
    // b's own history is still there.
    assert!(n.data(&b).join("snapshots").join(&sb).exists());
}

/// The commands `node`'s forced command accepted, in order.
fn peer_commands(n: &Nodes, node: &str) -> Vec<String> {
    let log = std::fs::read_to_string(n.data(node).join("state/ssh-command.log")).unwrap();
    log.lines()
        .filter(|l| l.contains("outcome=accepted"))
        .filter_map(|l| l.split("command=").nth(1))
        .map(|c| c.trim_matches('"').to_string())
        .collect()
}

/// An idle round (replicated volumes no container uses here) asks the
/// peer once for all of them (`list-newest`), not once per volume, and
/// still pulls exactly what the peer holds and this node lacks, restoring
/// nothing.
#[test]
fn an_idle_round_asks_the_peer_once_for_every_volume() {
    let (n, a, b, b_ip) = Nodes::sender_and_receiver("ri", "2G");
    for v in ["v1", "v2", "v3"] {
        n.ok(&a, "/VolumeDriver.Create", json!({"Name": v}));
        write_file(&n.data(&a).join(format!("volumes/{v}/a")), 4096, 1);
    }
    // v1: b holds a's state. v2: b holds a state made there, which a
    // lacks. v3: b holds nothing.
    let s1 = n.snapshot(&a, "v1");
    n.send(&a, &s1, &b_ip);
    n.ok(&b, "/VolumeDriver.Create", json!({"Name": "v2"}));
    // b replicates v2 with a (its line, paused here): a's key may pull it.
    n.paused_line(&b, "v2", &format!("replicate:{}", n.ip(&a)));
    write_file(&n.data(&b).join("volumes/v2/b"), 1 << 20, 2);
    let b2 = n.snapshot(&b, "v2");
    let before = peer_commands(&n, &b).len();

    // New lines run at once (they never ran); nothing is mounted on a.
    for v in ["v1", "v2", "v3"] {
        n.ok(
            &a,
            "/VolumeDriver.Schedule",
            json!({"Name": v, "Action": format!("replicate:{b_ip}"), "Timer": 60}),
        );
    }
    let results = || -> Vec<String> {
        let (_, text) = testkit::raw_request(
            &n.socket(&a),
            "GET",
            "/VolumeDriver.Schedule.List",
            br#"{"Detail": true}"#,
        );
        let list: serde_json::Value = serde_json::from_str(&text).unwrap();
        ["v1", "v2", "v3"]
            .iter()
            .map(|v| {
                list["Schedule"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|j| j["Name"] == *v)
                    .and_then(|j| j["LastResult"].as_str())
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    testkit::wait_until("the three idle jobs to run", 60, || {
        results().iter().all(|r| !r.is_empty())
    });
    let r = results();
    assert!(
        r[0].contains(&format!("{s1} from {b_ip} is already here")),
        "{r:?}"
    );
    assert!(
        r[1].contains(&format!("received {b2} from {b_ip} in full")),
        "{r:?}"
    );
    assert!(
        r[2].contains(&format!("{b_ip} has no snapshot of v3 yet")),
        "{r:?}"
    );

    // One question for the round; only v2, which had something new, was
    // listed and sent on its own; nothing was received there (a pushes no
    // state no container wrote on a).
    let asked = peer_commands(&n, &b).split_off(before);
    assert_eq!(
        asked,
        [
            "buttervolume list-newest".to_string(),
            "buttervolume list v2".to_string(),
            format!("buttervolume send {b2}"),
        ],
        "{asked:?}"
    );
    // b2 landed on a as b's snapshot; a's volume v2 was not restored.
    let landed = identity(&n.data(&a).join("snapshots").join(&b2));
    let made = identity(&n.data(&b).join("snapshots").join(&b2));
    assert_eq!(landed.received_uuid.as_deref(), Some(made.uuid.as_str()));
    assert!(n.data(&a).join("volumes/v2/a").exists());
    assert!(!n.data(&a).join("volumes/v2/b").exists());
}

/// The client ports of the SSH connections that ran `verb` on `node`
/// (its forced command logs `SSH_CLIENT` = "ip port server-port").
fn client_ports(n: &Nodes, node: &str, verb: &str) -> Vec<String> {
    let log = std::fs::read_to_string(n.data(node).join("state/ssh-command.log")).unwrap();
    log.lines()
        .filter(|l| l.contains(&format!("command=\"buttervolume {verb}")))
        .map(|l| {
            let client = l.split("client=").nth(1).unwrap();
            client.split_whitespace().nth(1).unwrap().to_string()
        })
        .collect()
}

#[test]
fn full_sends_run_openssh_and_sessions_are_kept_between_sends() {
    let (n, a, b, b_ip) = Nodes::sender_and_receiver("rt", "3G");
    // An `ssh` on the daemon's PATH that records each run, then runs the
    // real one.
    let wrap =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ssh-wrap-{}", std::process::id()));
    std::fs::create_dir_all(&wrap).unwrap();
    let runs = wrap.join("runs");
    std::fs::write(
        wrap.join("ssh"),
        format!(
            "#!/bin/sh\necho \"$*\" >>{}\nexec /usr/bin/ssh \"$@\"\n",
            runs.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        wrap.join("ssh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    n.stop(&a);
    let path = format!(
        "PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        wrap.display()
    );
    n.start_with(&a, &[&path]);
    let ssh_runs = || {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect::<Vec<_>>()
    };

    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "db"}));
    let vol = n.data(&a).join("volumes/db");
    write_file(&vol.join("big"), 8 << 20, 1);
    let s1 = n.snapshot(&a, "db");
    let summary = n.send(&a, &s1, &b_ip);
    assert!(summary.contains("in full"), "{summary}");
    assert_eq!(
        digest(&n.data(&b).join("snapshots").join(&s1).join("big")),
        digest(&vol.join("big"))
    );
    // The full stream went through OpenSSH, with the plugin's known_hosts
    // and a strict host key check.
    let full = ssh_runs();
    assert_eq!(full.len(), 1, "{full:?}");
    assert!(full[0].contains("StrictHostKeyChecking=yes"), "{full:?}");
    assert!(
        full[0].contains(&format!("{b_ip} buttervolume receive")),
        "{full:?}"
    );

    // Incremental sends stay on the libssh2 session of the listing, and
    // that session is kept from one send to the next: every listing and
    // incremental receive came through one connection.
    for i in 0..3u8 {
        write_file(&vol.join(format!("f{i}")), 64 << 10, i);
        let s = n.snapshot(&a, "db");
        let summary = n.send(&a, &s, &b_ip);
        assert!(summary.contains("incrementally"), "{summary}");
    }
    assert_eq!(
        ssh_runs().len(),
        1,
        "incrementals ran ssh: {:?}",
        ssh_runs()
    );
    let mut ports = client_ports(&n, &b, "list");
    ports.extend(client_ports(&n, &b, "receive --parent-uuid"));
    ports.sort();
    ports.dedup();
    assert_eq!(
        ports.len(),
        1,
        "one kept session expected, saw ports {ports:?}"
    );

    // The kept session dies on the peer's side (its sshd process is
    // killed): the next send connects anew and succeeds.
    let out = std::process::Command::new("pgrep")
        .args(["-f", "^sshd: root@notty"])
        .output()
        .unwrap();
    let netns = |pid: &str| {
        std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .ok()
    };
    let b_netns = std::fs::metadata(format!("/run/netns/{b}"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    let mut killed = 0;
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if netns(pid) == Some(b_netns) {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.parse().unwrap()),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            killed += 1;
        }
    }
    assert_eq!(killed, 1, "the kept session's sshd process on {b}");
    write_file(&vol.join("after"), 64 << 10, 9);
    let s = n.snapshot(&a, "db");
    let summary = n.send(&a, &s, &b_ip);
    assert!(summary.contains("incrementally"), "{summary}");
    assert_eq!(
        digest(&n.data(&b).join("snapshots").join(&s).join("after")),
        digest(&vol.join("after"))
    );
    let _ = std::fs::remove_dir_all(&wrap);
}

/// While a send runs, the daemon's transfer registry
/// (`GET /VolumeDriver.Transfers`, what `buttervolume send` draws on a
/// terminal) reports it with growing bytes and, for a full send, the
/// volume's measured size as the estimate; off a terminal the CLI prints
/// exactly one summary line, on stderr, and nothing on stdout.
#[test]
fn a_running_send_reports_growing_bytes_and_the_cli_one_summary_line() {
    use buttervolume::api::{StatusReply, TransfersReply};
    let (n, a, _b, b_ip) = Nodes::sender_and_receiver("rg", "2G");
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "big"}));
    let vol = n.data(&a).join("volumes/big");
    write_file(&vol.join("noise"), 24 << 20, 9);
    let s1 = n.snapshot(&a, "big");
    // The size status measures (in the background) is the full send's
    // estimate.
    let size = || {
        let out = n.cli(&a, &["status", "--json"]);
        let status: StatusReply =
            serde_json::from_str(&testkit::succeeded(out, "status --json")).unwrap();
        let v = status.volumes.iter().find(|v| v.name == "big").cloned();
        v.filter(|v| !v.size_stale).and_then(|v| v.size_bytes)
    };
    testkit::wait_until("the volume's size measured", 60, || size().is_some());
    let measured = size().unwrap();
    assert!(measured >= 24 << 20, "{measured}");

    let transfers = || -> TransfersReply {
        let (status, text) =
            testkit::raw_request(&n.socket(&a), "GET", "/VolumeDriver.Transfers", b"");
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    assert_eq!(transfers(), TransfersReply::default());
    let mine = |reply: TransfersReply| {
        reply
            .transfers
            .into_iter()
            .find(|t| t.snapshot == s1 && t.host == b_ip)
    };
    let out = std::thread::scope(|scope| {
        // 24 MiB at 4 MiB/s: several seconds on the wire.
        let cli = scope.spawn(|| n.cli(&a, &["send", "--bwlimit", "4", &b_ip, &s1]));
        let mut first = 0;
        testkit::wait_until("the send in the registry with bytes", 60, || {
            let seen = mine(transfers());
            first = seen.map_or(0, |t| t.bytes);
            first > 0
        });
        let mut seen = None;
        testkit::wait_until("its bytes growing", 60, || {
            seen = mine(transfers()).filter(|t| t.bytes > first);
            seen.is_some()
        });
        let seen = seen.unwrap();
        assert_eq!(seen.full, Some(true), "{seen:?}");
        assert_eq!(seen.estimated_bytes, Some(measured), "{seen:?}");
        assert!(seen.wire_bytes <= seen.bytes, "{seen:?}");
        cli.join().unwrap()
    });
    let stderr = testkit::stderr(&out);
    assert!(out.status.success(), "send failed: {stderr}");
    assert_eq!(
        testkit::stdout(&out),
        "",
        "3.13's send prints nothing on stdout"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr:?}");
    assert!(
        lines[0].starts_with(&format!("sent {s1} to {b_ip} in full: ")),
        "{stderr:?}"
    );
    assert!(!stderr.contains('\r'), "no progress drawn off a terminal");
    // Done: nothing running any more.
    assert_eq!(transfers(), TransfersReply::default());

    // On a terminal: the line refreshed in place, with an ETA for this
    // full send (its size is measured), then the summary.
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "big2"}));
    write_file(&n.data(&a).join("volumes/big2/noise"), 16 << 20, 3);
    let s2 = n.snapshot(&a, "big2");
    testkit::wait_until("big2's size measured", 60, || {
        let out = n.cli(&a, &["status", "--json"]);
        let status: StatusReply =
            serde_json::from_str(&testkit::succeeded(out, "status --json")).unwrap();
        let v = status.volumes.into_iter().find(|v| v.name == "big2");
        v.is_some_and(|v| !v.size_stale && v.size_bytes.is_some())
    });
    let (master, slave) = pty();
    let mut child = std::process::Command::new(testkit::bin())
        .args(["send", "--bwlimit", "4", &b_ip, &s2])
        .env("BUTTERVOLUME_SOCKET", n.socket(&a))
        .stdout(std::process::Stdio::piped())
        .stderr(slave)
        .spawn()
        .unwrap();
    let drawn = std::thread::spawn(move || {
        let mut master = master;
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the CLI, the last holder of the terminal, is gone.
        while let Ok(got) = std::io::Read::read(&mut master, &mut buf) {
            if got == 0 {
                break;
            }
            all.extend_from_slice(&buf[..got]);
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let status = child.wait().unwrap();
    let drawn = drawn.join().unwrap();
    assert!(status.success(), "{drawn}");
    let line = format!("\rsending {s2} to {b_ip}: ");
    assert!(
        drawn.matches(&line).count() >= 2,
        "refreshed in place: {drawn:?}"
    );
    assert!(drawn.contains(" MiB (full, ~"), "{drawn:?}");
    assert!(drawn.contains(" MiB/s, ETA "), "{drawn:?}");
    let summary = drawn.rsplit("\x1b[K").next().unwrap();
    assert!(
        summary.starts_with(&format!("sent {s2} to {b_ip} in full: ")),
        "the line is cleared, then the summary: {drawn:?}"
    );
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(stdout, "");
}

/// A pseudo-terminal: its master side, and its slave side to give a
/// child as its stderr.
fn pty() -> (std::fs::File, std::fs::File) {
    use nix::libc;
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // SAFETY: a new descriptor, checked, that the File then owns.
    let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
    assert!(fd >= 0, "posix_openpt");
    // SAFETY: fd is ours and open; nothing else owns it.
    let master = unsafe { std::fs::File::from_raw_fd(fd) };
    // SAFETY: fd is a pseudo-terminal master.
    assert_eq!(unsafe { libc::grantpt(fd) }, 0, "grantpt");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::unlockpt(fd) }, 0, "unlockpt");
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: writes a NUL-terminated name of at most `name.len()` bytes.
    let named = unsafe { libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) };
    assert_eq!(named, 0, "ptsname_r");
    // SAFETY: ptsname_r succeeded: `name` holds a NUL-terminated string.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .unwrap();
    (master, slave)
}
