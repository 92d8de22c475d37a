//! Replication between real nodes (network + mount namespaces, loop btrfs,
//! sshd with our forced command, one daemon each): full and incremental
//! sends checked by content and UUIDs, the forced command's refusals, sync.

mod common;

use std::path::Path;

use common::nodes::Nodes;
use serde_json::json;

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
    let n = Nodes::up("rp", 2, "3G");
    let (a, b) = (n.name(1), n.name(2));
    n.pair(&a, &b);
    let b_ip = n.ip(&b);
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "db"}));
    let vol = n.data(&a).join("volumes/db");
    write_file(&vol.join("big"), 8 << 20, 1);

    let s1 = n.snapshot(&a, "db");
    let reply = n.ok(
        &a,
        "/VolumeDriver.Snapshot.Send",
        json!({"Name": s1, "Host": b_ip}),
    );
    let summary = reply["Summary"].as_str().unwrap();
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
    let meta = buttervolume::btrfs::get_xattr(&remote, "user.buttervolume").unwrap();
    assert!(meta.is_some(), "metadata did not travel");

    // 20 successive incremental sends, each small and each landing.
    let mut previous = s1.clone();
    for i in 0..20u8 {
        write_file(&vol.join(format!("f{i}")), 64 << 10, i);
        let s = n.snapshot(&a, "db");
        let reply = n.ok(
            &a,
            "/VolumeDriver.Snapshot.Send",
            json!({"Name": s, "Host": b_ip}),
        );
        let summary = reply["Summary"].as_str().unwrap();
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
    let markers: Vec<String> = std::fs::read_dir(n.data(&a).join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|f| f.ends_with(&format!("@{b_ip}")))
        .collect();
    assert_eq!(markers, vec![format!("{previous}@{b_ip}")]);

    // Sending again the same snapshot: already there, nothing streamed.
    let reply = n.ok(
        &a,
        "/VolumeDriver.Snapshot.Send",
        json!({"Name": previous, "Host": b_ip}),
    );
    assert!(
        reply["Summary"].as_str().unwrap().contains("already has"),
        "{reply}"
    );

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
    let reply = n.ok(
        &b,
        "/VolumeDriver.Snapshot.Send",
        json!({"Name": sb, "Host": a_ip}),
    );
    assert!(
        reply["Summary"].as_str().unwrap().contains("incrementally"),
        "{reply}"
    );
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
    // Not paired yet: a clear error, and no marker.
    let reply = n.post(
        &a,
        "/VolumeDriver.Snapshot.Send",
        &json!({"Name": s, "Host": b_ip}),
    );
    let err = reply["Err"].as_str().unwrap();
    assert!(err.contains("key") || err.contains("accepted"), "{err}");
    assert!(!n
        .data(&a)
        .join("snapshots")
        .join(format!("{s}@{b_ip}"))
        .exists());

    n.pair(&a, &b);
    n.ok(
        &a,
        "/VolumeDriver.Snapshot.Send",
        json!({"Name": s, "Host": b_ip, "Test": true}),
    );
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
    let n = Nodes::up("rf", 2, "2G");
    let (a, b) = (n.name(1), n.name(2));
    n.pair(&a, &b);
    let b_ip = n.ip(&b);
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
    let n = Nodes::up("rs", 2, "2G");
    let (a, b) = (n.name(1), n.name(2));
    n.pair(&a, &b);
    let b_ip = n.ip(&b);
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "web"}));
    n.ok(&b, "/VolumeDriver.Create", json!({"Name": "web"}));
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
    let s1 = n.snapshot(&a, "app");
    n.ok(
        &a,
        "/VolumeDriver.Snapshot.Send",
        json!({"Name": s1, "Host": b_ip}),
    );
    n.ok(
        &a,
        "/VolumeDriver.Snapshot.Send",
        json!({"Name": s1, "Host": c_ip}),
    );
    write_file(&vol.join("y"), 1 << 20, 2);
    let s2 = n.snapshot(&a, "app");
    // Only b gets s2: c's newest marker stays on s1.
    n.ok(
        &a,
        "/VolumeDriver.Snapshot.Send",
        json!({"Name": s2, "Host": b_ip}),
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // A purge keeping nothing older than one second... except send parents.
    let reply = n.ok(
        &a,
        "/VolumeDriver.Snapshots.Purge",
        json!({"Name": "app", "Pattern": "1m:2m", "Dryrun": true}),
    );
    assert_eq!(
        reply["Purged"],
        json!([]),
        "the 1-minute window keeps everything"
    );
    let snapshots = n.data(&a).join("snapshots");
    // Age everything by renaming is impossible (read-only), so check the
    // protection rule on the real names directly.
    let candidates: Vec<buttervolume::purge::Candidate> = buttervolume::snapshots::by_creation(
        &buttervolume::subvolumes::Btrfs,
        &snapshots,
        "app",
        true,
    )
    .into_iter()
    .map(|p| buttervolume::purge::Candidate {
        order: p.order(),
        name: p.name,
        taken: None,
    })
    .collect();
    let keep = buttervolume::purge::protected(&candidates);
    for must in [
        s1.clone(),
        format!("{s1}@{c_ip}"),
        s2.clone(),
        format!("{s2}@{b_ip}"),
    ] {
        assert!(keep.contains(&must), "{must} not protected: {keep:?}");
    }
    // Both peers then get incremental sends from their own parents.
    write_file(&vol.join("z"), 1 << 20, 3);
    let s3 = n.snapshot(&a, "app");
    let rb = n.ok(
        &a,
        "/VolumeDriver.Snapshot.Send",
        json!({"Name": s3, "Host": b_ip}),
    );
    assert!(
        rb["Summary"]
            .as_str()
            .unwrap()
            .contains(&format!("incrementally from {s2}")),
        "{rb}"
    );
    let rc = n.ok(
        &a,
        "/VolumeDriver.Snapshot.Send",
        json!({"Name": s3, "Host": c_ip}),
    );
    assert!(
        rc["Summary"]
            .as_str()
            .unwrap()
            .contains(&format!("incrementally from {s1}")),
        "{rc}"
    );
    for node in [&b, &c] {
        let landed = n.data(node).join("snapshots").join(&s3);
        assert_eq!(digest(&landed.join("z")), digest(&vol.join("z")));
    }
}

#[test]
fn zstd_on_the_wire_and_bandwidth_limit() {
    let n = Nodes::up("rz", 2, "2G");
    let (a, b) = (n.name(1), n.name(2));
    n.pair(&a, &b);
    let b_ip = n.ip(&b);
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "z"}));
    let vol = n.data(&a).join("volumes/z");
    // Compressible data: 16 MiB of a repeated pattern.
    std::fs::write(vol.join("text"), "buttervolume ".repeat(16 << 20 >> 4)).unwrap();
    let s1 = n.snapshot(&a, "z");
    let reply = n.ok(
        &a,
        "/VolumeDriver.Snapshot.Send",
        json!({"Name": s1, "Host": b_ip, "Compress": true}),
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
    let n = Nodes::up("rl", 2, "2G");
    let (a, b) = (n.name(1), n.name(2));
    n.pair(&a, &b);
    let b_ip = n.ip(&b);
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "web"}));
    n.ok(&b, "/VolumeDriver.Create", json!({"Name": "web"}));
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
    n.ok(
        &a,
        "/VolumeDriver.Snapshot.Send",
        json!({"Name": s1, "Host": b_ip}),
    );
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
    let out = std::process::Command::new(common::BIN)
        .args(["receive", &a_ip, "db"])
        .env("BUTTERVOLUME_SOCKET", n.socket(&b))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{s2}\n"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already here"));

    // A volume never sent: in full.
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "web"}));
    write_file(&n.data(&a).join("volumes/web/index"), 4096, 3);
    let w1 = n.snapshot(&a, "web");
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
    assert!(e.contains("invalid volume name"), "{e}");
    let e = err(json!({"Name": "db", "Host": "-oProxyCommand=x"}));
    assert!(e.contains("invalid host"), "{e}");
    n.link(&a, "down");
    let e = err(json!({"Name": "db", "Host": a_ip}));
    n.link(&a, "up");
    assert!(e.contains("cannot connect") || e.contains("ssh to"), "{e}");
    assert!(!e.contains("no snapshot"), "{e}");
    // No half-received leftover anywhere.
    let leftovers: Vec<String> = std::fs::read_dir(n.data(&b).join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `replicate <host> <volume>`: snapshot now and send; a failed send
/// leaves no fresh snapshot behind.
#[test]
fn replicate_snapshots_and_sends_or_leaves_nothing() {
    let n = Nodes::up("rr", 2, "2G");
    let (a, b) = (n.name(1), n.name(2));
    n.pair(&a, &b);
    let b_ip = n.ip(&b);
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "app"}));
    write_file(&n.data(&a).join("volumes/app/data"), 1 << 20, 5);
    let out = std::process::Command::new(common::BIN)
        .args(["replicate", &b_ip, "app"])
        .env("BUTTERVOLUME_SOCKET", n.socket(&a))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snapshot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(snapshot.starts_with("app@"), "{snapshot}");
    let landed = n.data(&b).join("snapshots").join(&snapshot);
    assert_eq!(
        digest(&landed.join("data")),
        digest(&n.data(&a).join("volumes/app/data"))
    );

    let count = || {
        std::fs::read_dir(n.data(&a).join("snapshots"))
            .unwrap()
            .count()
    };
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
