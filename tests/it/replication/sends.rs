//! Full and incremental sends, test mode, the forced command's refusals,
//! sync with rsync, markers per host, zstd and bandwidth limit.

use super::*;

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
