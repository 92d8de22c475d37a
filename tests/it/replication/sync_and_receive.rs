//! Sync and symlinks, receive of the peer's newest snapshot,
//! replicate, a send to a peer that moved on.

use super::*;

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
