//! Snapshot, list, remove, restore, clone, purge and inspect through the
//! control API and our CLI, on a real daemon and real btrfs.

use serde_json::json;
use testkit::{stderr, stdout, Daemon};

fn read(d: &Daemon, volume: &str, file: &str) -> String {
    std::fs::read_to_string(d.volumes().join(volume).join(file)).unwrap()
}

fn write(d: &Daemon, volume: &str, file: &str, text: &str) {
    std::fs::write(d.volumes().join(volume).join(file), text).unwrap();
}

#[test]
fn snapshot_list_remove() {
    let d = Daemon::start("snap");
    d.ok("/VolumeDriver.Create", json!({"Name": "db"}));
    d.ok("/VolumeDriver.Create", json!({"Name": "db2"}));
    write(&d, "db", "f", "one");
    let snap = d.ok("/VolumeDriver.Snapshot", json!({"Name": "db"}))["Snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(snap.starts_with("db@"), "{snap}");
    let stamp = snap.split('@').nth(1).unwrap();
    assert!(buttervolume::names::parse_timestamp(stamp, buttervolume::names::DTFORMAT).is_some());
    let path = d.snapshots().join(&snap);
    assert!(buttervolume::btrfs::identity(&path).unwrap().read_only);
    assert_eq!(std::fs::read_to_string(path.join("f")).unwrap(), "one");

    d.ok("/VolumeDriver.Snapshot", json!({"Name": "db2"}));
    let (_, all) = d.get("/VolumeDriver.Snapshot.List");
    assert_eq!(all["Snapshots"].as_array().unwrap().len(), 2);
    let (_, mine) = d.get("/VolumeDriver.Snapshot.List/db");
    assert_eq!(mine["Snapshots"], json!([snap]));

    let err = d.err("/VolumeDriver.Snapshot", json!({"Name": "nope"}));
    assert!(err.contains("no such volume"), "{err}");
    d.ok("/VolumeDriver.Snapshot.Remove", json!({"Name": snap}));
    assert!(!path.exists());
    let err = d.err("/VolumeDriver.Snapshot.Remove", json!({"Name": snap}));
    assert!(err.contains("No such snapshot"), "{err}");
    for bad in ["../volumes/db", "db", "db@../../x", "db@a/b"] {
        let err = d.err("/VolumeDriver.Snapshot.Remove", json!({"Name": bad}));
        assert!(err.contains("invalid snapshot name"), "{bad}: {err}");
    }
    assert!(d.volumes().join("db").exists());
}

/// A burst of concurrent snapshot requests on one volume: every one gets
/// its own name and its own subvolume.
#[test]
fn concurrent_snapshots_of_one_volume_get_distinct_names() {
    let d = Daemon::start("burst");
    d.ok("/VolumeDriver.Create", json!({"Name": "b"}));
    let socket = d.socket.clone();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| {
                        let (_, body) = testkit::raw_request(
                            &socket,
                            "POST",
                            "/VolumeDriver.Snapshot",
                            br#"{"Name":"b"}"#,
                        );
                        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                        assert_eq!(v["Err"], "", "{body}");
                        v["Snapshot"].as_str().unwrap().to_string()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut names: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 80);
    assert_eq!(std::fs::read_dir(d.snapshots()).unwrap().count(), 80);
}

/// The name a snapshot would get is already taken: the timestamp moves
/// forward (1 µs at a time) to the first free name, and what held the name
/// is untouched. Driven with a DTFORMAT in whole seconds, where the
/// collision is certain: snapshots are first made under this second's and
/// the next second's names, so a snapshot requested now lands on neither.
#[test]
fn a_snapshot_whose_name_is_taken_moves_to_the_next_free_timestamp() {
    const SECONDS: &str = "%Y-%m-%dT%H:%M:%S";
    let d = Daemon::builder("collide")
        .env("BUTTERVOLUME_DTFORMAT", SECONDS)
        .start();
    d.ok("/VolumeDriver.Create", json!({"Name": "c"}));
    let name = |t: chrono::NaiveDateTime| {
        format!("c@{}", buttervolume::names::format_timestamp(t, SECONDS))
    };
    write(&d, "c", "f", "earlier");
    let now = buttervolume::names::local_now();
    let second = chrono::Duration::seconds(1);
    let taken = [name(now), name(now + second)];
    for t in &taken {
        buttervolume::btrfs::snapshot(&d.volumes().join("c"), &d.snapshots().join(t), true)
            .unwrap();
    }
    write(&d, "c", "f", "now");
    let snap = d.ok("/VolumeDriver.Snapshot", json!({"Name": "c"}))["Snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        snap,
        name(now + second * 2),
        "not the first free name after {taken:?}"
    );
    let read = |s: &str| std::fs::read_to_string(d.snapshots().join(s).join("f")).unwrap();
    assert_eq!(read(&snap), "now");
    for t in &taken {
        assert_eq!(read(t), "earlier", "{t} was overwritten");
    }
    let (_, listed) = d.get("/VolumeDriver.Snapshot.List/c");
    assert_eq!(listed["Snapshots"], json!([taken[0], taken[1], snap]));
}

#[test]
fn restore_by_snapshot_and_by_volume_with_backup() {
    let d = Daemon::start("restore");
    d.ok(
        "/VolumeDriver.Create",
        json!({"Name": "app", "Opts": {"copyonwrite": "false"}}),
    );
    write(&d, "app", "f", "v1");
    let s1 = d.ok("/VolumeDriver.Snapshot", json!({"Name": "app"}))["Snapshot"].clone();
    write(&d, "app", "f", "v2");
    let s2 = d.ok("/VolumeDriver.Snapshot", json!({"Name": "app"}))["Snapshot"].clone();
    write(&d, "app", "f", "v3");

    let reply = d.ok("/VolumeDriver.Snapshot.Restore", json!({"Name": s1}));
    assert_eq!(read(&d, "app", "f"), "v1");
    let backup = reply["VolumeBackup"].as_str().unwrap();
    assert!(backup.starts_with("app@"));
    assert_eq!(
        std::fs::read_to_string(d.snapshots().join(backup).join("f")).unwrap(),
        "v3"
    );
    // The restored volume is writable and keeps its NOCOW attribute.
    write(&d, "app", "g", "x");
    let flags = buttervolume::btrfs::inode_flags(&d.volumes().join("app")).unwrap();
    assert_ne!(flags & buttervolume::btrfs::FS_NOCOW_FL, 0);

    // By volume name: the newest snapshot, which is now the backup (v3).
    d.ok("/VolumeDriver.Snapshot.Restore", json!({"Name": "app"}));
    assert_eq!(read(&d, "app", "f"), "v3");

    // Into another, new volume: no backup.
    let reply = d.ok(
        "/VolumeDriver.Snapshot.Restore",
        json!({"Name": s2, "Target": "copy"}),
    );
    assert!(reply.get("VolumeBackup").is_none());
    assert_eq!(read(&d, "copy", "f"), "v2");

    let err = d.err(
        "/VolumeDriver.Snapshot.Restore",
        json!({"Name": "app@2020-01-01T00:00:00.000000"}),
    );
    assert!(err.contains("No such snapshot"), "{err}");
    let err = d.err(
        "/VolumeDriver.Snapshot.Restore",
        json!({"Name": s2, "Target": "../evil"}),
    );
    assert!(err.contains("Invalid characters in volume name"), "{err}");
    // A volume without snapshots: success with nothing done (reference).
    d.ok("/VolumeDriver.Create", json!({"Name": "fresh"}));
    let reply = d.ok("/VolumeDriver.Snapshot.Restore", json!({"Name": "fresh"}));
    assert!(reply.get("VolumeBackup").is_none());
    // No leftovers in staging.
    assert_eq!(
        std::fs::read_dir(d.volumes().join(".staging"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn restore_refuses_mounted_targets_unless_forced() {
    let d = Daemon::start("restmnt");
    d.ok("/VolumeDriver.Create", json!({"Name": "m"}));
    write(&d, "m", "f", "old");
    let s = d.ok("/VolumeDriver.Snapshot", json!({"Name": "m"}))["Snapshot"].clone();
    write(&d, "m", "f", "new");
    d.ok("/VolumeDriver.Mount", json!({"Name": "m", "ID": "c1"}));
    let err = d.err("/VolumeDriver.Snapshot.Restore", json!({"Name": s}));
    assert!(err.contains("mounted"), "{err}");
    assert_eq!(read(&d, "m", "f"), "new");
    d.ok(
        "/VolumeDriver.Snapshot.Restore",
        json!({"Name": s, "Force": true}),
    );
    assert_eq!(read(&d, "m", "f"), "old");
}

#[test]
fn nonmigrable_flag_survives_restore_and_blocks_foreign_snapshots() {
    let d = Daemon::start("nonmig");
    d.ok("/VolumeDriver.Create", json!({"Name": "a"}));
    d.ok(
        "/VolumeDriver.Create",
        json!({"Name": "b", "Opts": {"nonmigrable": "true"}}),
    );
    write(&d, "a", "f", "from a");
    write(&d, "b", "f", "from b");
    let sa = d.ok("/VolumeDriver.Snapshot", json!({"Name": "a"}))["Snapshot"].clone();
    let sb = d.ok("/VolumeDriver.Snapshot", json!({"Name": "b"}))["Snapshot"].clone();

    let err = d.err(
        "/VolumeDriver.Snapshot.Restore",
        json!({"Name": sa, "Target": "b"}),
    );
    assert!(err.contains("non-migrable"), "{err}");
    assert_eq!(read(&d, "b", "f"), "from b");

    write(&d, "b", "f", "changed");
    d.ok("/VolumeDriver.Snapshot.Restore", json!({"Name": sb}));
    assert_eq!(read(&d, "b", "f"), "from b");
    let get = d.ok("/VolumeDriver.Get", json!({"Name": "b"}));
    assert_eq!(get["Volume"]["Status"]["NonMigrable"], true);

    // Forced: allowed, and b stays non-migrable.
    d.ok(
        "/VolumeDriver.Snapshot.Restore",
        json!({"Name": sa, "Target": "b", "Force": true}),
    );
    assert_eq!(read(&d, "b", "f"), "from a");
    let get = d.ok("/VolumeDriver.Get", json!({"Name": "b"}));
    assert_eq!(get["Volume"]["Status"]["NonMigrable"], true);

    // Docker forgot b and it was removed: a restore from its snapshot
    // brings the flag back with the data.
    d.ok("/VolumeDriver.Remove", json!({"Name": "b"}));
    d.ok("/VolumeDriver.Snapshot.Restore", json!({"Name": sb}));
    let get = d.ok("/VolumeDriver.Get", json!({"Name": "b"}));
    assert_eq!(get["Volume"]["Status"]["NonMigrable"], true);
}

#[test]
fn clone_volume() {
    let d = Daemon::start("clone");
    d.ok(
        "/VolumeDriver.Create",
        json!({"Name": "src", "Opts": {"compression": "zstd"}}),
    );
    write(&d, "src", "f", "data");
    let reply = d.ok(
        "/VolumeDriver.Clone",
        json!({"Name": "src", "Target": "dst"}),
    );
    assert_eq!(reply["VolumeCloned"], "dst");
    assert_eq!(read(&d, "dst", "f"), "data");
    write(&d, "dst", "f", "changed");
    assert_eq!(read(&d, "src", "f"), "data");
    let err = d.err(
        "/VolumeDriver.Clone",
        json!({"Name": "src", "Target": "dst"}),
    );
    assert!(err.contains("already exists"), "{err}");
    let err = d.err(
        "/VolumeDriver.Clone",
        json!({"Name": "nope", "Target": "x"}),
    );
    assert!(err.contains("no such volume"), "{err}");
    let err = d.err("/VolumeDriver.Clone", json!({"Name": "src"}));
    assert!(err.contains("Target"), "{err}");
    let err = d.err(
        "/VolumeDriver.Clone",
        json!({"Name": "src", "Target": "a/b"}),
    );
    assert!(err.contains("Invalid characters in volume name"), "{err}");
    let reply = d.ok("/VolumeDriver.Get", json!({"Name": "dst"}));
    assert_eq!(reply["Volume"]["Status"]["Options"]["compression"], "zstd");
}

fn make_snapshot(d: &Daemon, name: &str) {
    let path = d.snapshots().join(name);
    buttervolume::btrfs::snapshot(
        &d.volumes().join(name.split('@').next().unwrap()),
        &path,
        true,
    )
    .unwrap();
}

#[test]
fn purge_endpoint_and_cli() {
    let d = Daemon::start("purge");
    d.ok("/VolumeDriver.Create", json!({"Name": "p"}));
    let now = chrono::Local::now().naive_local();
    let fmt = |t: chrono::NaiveDateTime| {
        buttervolume::names::format_timestamp(t, buttervolume::names::DTFORMAT)
    };
    let recent = format!("p@{}", fmt(now - chrono::Duration::minutes(10)));
    let old = format!("p@{}", fmt(now - chrono::Duration::days(30)));
    let older = format!("p@{}", fmt(now - chrono::Duration::days(40)));
    let marker_src = format!("p@{}", fmt(now - chrono::Duration::days(50)));
    let marker = format!("{marker_src}@node2");
    for s in [&recent, &old, &older, &marker_src] {
        make_snapshot(&d, s);
    }
    buttervolume::btrfs::snapshot(
        &d.snapshots().join(&marker_src),
        &d.snapshots().join(&marker),
        true,
    )
    .unwrap();

    let out = d.cli(&["purge", "--dryrun", "1h:1d", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut listed_sorted: Vec<String> = text.lines().map(String::from).collect();
    listed_sorted.sort();
    assert_eq!(listed_sorted, vec![older.clone(), old.clone()]);
    assert!(d.snapshots().join(&old).exists(), "dry run deleted");

    // 3.13's reply: nothing but Err, unless asked.
    let reply = d.ok(
        "/VolumeDriver.Snapshots.Purge",
        json!({"Name": "p", "Pattern": "1h:1d"}),
    );
    assert_eq!(reply, json!({"Err": ""}));
    assert!(!d.snapshots().join(&old).exists());
    assert!(!d.snapshots().join(&older).exists());
    assert!(d.snapshots().join(&recent).exists());
    assert!(d.snapshots().join(&marker).exists(), "newest marker purged");
    assert!(
        d.snapshots().join(&marker_src).exists(),
        "marker's source purged"
    );

    let err = d.err(
        "/VolumeDriver.Snapshots.Purge",
        json!({"Name": "p", "Pattern": "1x"}),
    );
    assert_eq!(err, "Invalid purge pattern");
    let out = d.cli(&["purge", "1x:2y", "p"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Invalid purge pattern"));
}

#[test]
fn cli_verbs_match_the_reference_output() {
    let d = Daemon::start("cli");
    d.ok("/VolumeDriver.Create", json!({"Name": "c"}));
    write(&d, "c", "f", "1");

    let out = d.cli(&["snapshot", "c"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let snap = stdout(&out).trim().to_string();
    assert!(snap.starts_with("c@"));
    let out = d.cli(&["snapshots", "c"]);
    assert_eq!(stdout(&out), format!("{snap}\n"));
    let out = d.cli(&["snapshots", "c", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list, json!([snap]));

    write(&d, "c", "f", "2");
    let out = d.cli(&["restore", &snap]);
    assert!(out.status.success(), "{}", stderr(&out));
    let backup = stdout(&out).trim().to_string();
    assert!(backup.starts_with("c@") && backup != snap, "{backup}");
    assert_eq!(read(&d, "c", "f"), "1");

    let out = d.cli(&["clone", "c", "c2"]);
    assert_eq!(stdout(&out), "c2\n");
    let out = d.cli(&["rm", &backup]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "");

    let out = d.cli(&["inspect", "c", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["Snapshots"], 1);
    assert_eq!(v["LatestSnapshot"], snap.as_str());
    assert_eq!(v["NonMigrable"], false);
    let out = d.cli(&["inspect", "c"]);
    assert!(
        stdout(&out).contains("NonMigrable: false"),
        "{}",
        stdout(&out)
    );

    // Failures: message on stderr, exit 1.
    for args in [
        vec!["snapshot", "nope"],
        vec!["rm", "c@2000-01-01T00:00:00.000000"],
        vec!["clone", "nope", "x"],
        vec!["inspect", "nope"],
    ] {
        let out = d.cli(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).starts_with("ERROR:root:"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(stdout(&out), "");
    }
}

#[test]
fn cli_without_daemon_says_how_to_start_it() {
    let mut d = Daemon::start("nodaemon");
    d.stop();
    let out = d.cli(&["snapshot", "x"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("buttervolume run"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// A peer's snapshot named in the future (clock skew, or hostile) lands
/// through the forced command, then a local snapshot is taken: "newest" is
/// the local one (created later), for restore, inspect and purge alike.
#[test]
fn a_future_dated_received_snapshot_cannot_hijack_restore() {
    let d = Daemon::start("future");
    d.ok("/VolumeDriver.Create", json!({"Name": "db"}));
    write(&d, "db", "f", "from the peer");
    // The peer's copy, sent as a stream named far in the future.
    let future = "db@2099-01-01T00:00:00.000000";
    let staging = d.root.join("peer");
    std::fs::create_dir_all(&staging).unwrap();
    buttervolume::btrfs::snapshot(&d.volumes().join("db"), &staging.join(future), true).unwrap();
    let stream = std::process::Command::new("btrfs")
        .args(["send", "-q"])
        .arg(staging.join(future))
        .output()
        .unwrap();
    assert!(stream.status.success());
    let receive = testkit::output_with_stdin(
        std::process::Command::new(testkit::bin())
            .arg("ssh-command")
            .env("SSH_ORIGINAL_COMMAND", "buttervolume receive")
            .envs(d.env.iter().cloned()),
        &stream.stdout,
    );
    assert!(receive.status.success(), "{}", stderr(&receive));
    buttervolume::btrfs::delete_subvolume(&staging.join(future)).unwrap();
    assert!(d.snapshots().join(future).exists());

    // The app writes on here, and a snapshot is taken: that is the newest.
    write(&d, "db", "f", "newest local state");
    let local = d.ok("/VolumeDriver.Snapshot", json!({"Name": "db"}))["Snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    write(&d, "db", "f", "scratch");
    d.ok("/VolumeDriver.Snapshot.Restore", json!({"Name": "db"}));
    assert_eq!(read(&d, "db", "f"), "newest local state");
    let inspect = d.ok("/VolumeDriver.Inspect", json!({"Name": "db"}));
    // Restore saved a backup (created last): inspect's newest is that one.
    let latest = inspect["Volume"]["LatestSnapshot"].as_str().unwrap();
    assert_ne!(latest, future, "{inspect}");
    assert_ne!(latest, local, "the restore backup is newer: {inspect}");
    // Purge: the future name is aged from its local creation (seconds
    // ago), so a 1-minute window keeps it, as it keeps everything else.
    let reply = d.ok(
        "/VolumeDriver.Snapshots.Purge",
        json!({"Name": "db", "Pattern": "1m:2m", "Dryrun": true}),
    );
    assert_eq!(reply["Purged"], json!([]), "{reply}");
}
