//! Small holes of issue 10, each through the real daemon (or the real
//! store) on real btrfs: a cron timer with a line break, the volume name
//! length rule, and truthful errors when Remove and Restore race.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;

use buttervolume::config::Config;
use buttervolume::names::{MAX_MARKER_HOST_BYTES, MAX_VOLUME_BYTES};
use buttervolume::snapshots;
use buttervolume::volumes::{Activity, VolumeError, VolumeStore};
use serde_json::json;
use testkit::Daemon;

/// A daemon that can reach no Docker and no peer (the harness's defaults)
/// and whose replication attempts go to port 1, where nothing listens.
fn isolated(test: &str) -> Daemon {
    Daemon::builder(test).env("SSH_PORT", "1").start()
}

#[test]
fn a_timer_with_a_control_character_is_refused_and_nothing_is_lost() {
    let mut d = isolated("cron-newline");
    d.ok("/VolumeDriver.Create", json!({"Name": "db"}));
    d.ok(
        "/VolumeDriver.Schedule",
        json!({"Name": "db", "Action": "purge:1h:1d", "Timer": "cron:0 3 * * *"}),
    );
    for bad in [
        "cron:0 3\n* * *",
        "cron:0 3\r\n* * *",
        "cron:0\t3 * * *",
        "60\n",
        "cron:0 3 * * *\u{0}",
        "cron:\"0 3 * * *\"",
    ] {
        let err = d.err(
            "/VolumeDriver.Schedule",
            json!({"Name": "db", "Action": "purge:1h:1d", "Timer": bad}),
        );
        assert!(err.contains("not allowed in a timer"), "{bad:?}: {err}");
        let err = d.err(
            "/VolumeDriver.Schedule",
            json!({"Name": "db", "Action": "snapshot", "Timer": bad}),
        );
        assert!(err.contains("not allowed in a timer"), "{bad:?}: {err}");
    }
    let expect = json!([{"Name": "db", "Action": "purge:1h:1d", "Timer": "cron:0 3 * * *", "Active": "True"}]);
    let check = |d: &Daemon| {
        let list = d.ok("/VolumeDriver.Schedule.List", json!({}));
        let jobs: Vec<_> = list["Schedule"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| json!({"Name": j["Name"], "Action": j["Action"], "Timer": j["Timer"], "Active": j["Active"]}))
            .collect();
        assert_eq!(json!(jobs), expect, "{list}");
        assert!(list.get("Invalid").is_none(), "{list}");
    };
    check(&d);
    // The file reads back the same after a restart.
    d.stop();
    d.spawn();
    check(&d);
    let csv = std::fs::read_to_string(d.root.join("config/schedule.csv")).unwrap();
    assert_eq!(csv, "db,purge:1h:1d,cron:0 3 * * *,True\r\n");
}

/// A legal volume name of exactly `len` bytes starting with `tag`.
fn long_name(tag: &str, len: usize) -> String {
    let mut name = tag.to_string();
    let filler = "_x.y-z0";
    while name.len() < len {
        name.push(filler.as_bytes()[name.len() % filler.len()] as char);
    }
    name
}

#[test]
fn a_volume_name_at_the_maximum_length_goes_through_every_operation() {
    let d = isolated("name-length");
    let vol = long_name("a", MAX_VOLUME_BYTES);
    let restored_into = long_name("b", MAX_VOLUME_BYTES);
    let clone = long_name("c", MAX_VOLUME_BYTES);

    d.ok("/VolumeDriver.Create", json!({"Name": vol}));
    std::fs::write(d.volumes().join(&vol).join("f"), "one").unwrap();
    let snap = d.ok("/VolumeDriver.Snapshot", json!({"Name": vol}))["Snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(d.volumes().join(&vol).join("f"), "two").unwrap();

    // Restore by volume name: the current content is saved as a backup
    // snapshot first, `<vol>@<timestamp>` again.
    let reply = d.ok("/VolumeDriver.Snapshot.Restore", json!({"Name": vol}));
    let backup = reply["VolumeBackup"].as_str().unwrap().to_string();
    assert!(backup.starts_with(&format!("{vol}@")), "{reply}");
    let read = |v: &str| std::fs::read_to_string(d.volumes().join(v).join("f")).unwrap();
    assert_eq!(read(&vol), "one");
    assert_eq!(
        std::fs::read_to_string(d.snapshots().join(&backup).join("f")).unwrap(),
        "two"
    );
    // Restore into a new volume, and clone, both at the maximum length.
    d.ok(
        "/VolumeDriver.Snapshot.Restore",
        json!({"Name": snap, "Target": restored_into}),
    );
    assert_eq!(read(&restored_into), "one");
    d.ok("/VolumeDriver.Clone", json!({"Name": vol, "Target": clone}));
    assert_eq!(read(&clone), "one");
    let clone_snap = d.ok("/VolumeDriver.Snapshot", json!({"Name": clone}))["Snapshot"]
        .as_str()
        .unwrap()
        .to_string();

    // Received through the forced command, as a peer would land it.
    let mut send = Command::new("btrfs")
        .arg("send")
        .arg("-q")
        .arg(d.snapshots().join(&clone_snap))
        .stdout(Stdio::piped())
        .spawn()
        .expect("btrfs send");
    let out = Command::new(testkit::bin())
        .arg("ssh-command")
        .envs(d.env.iter().cloned())
        .env("SSH_ORIGINAL_COMMAND", "buttervolume receive --test")
        .env("RUST_LOG", "warn")
        .stdin(send.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(send.wait().unwrap().success());
    assert!(
        out.status.success(),
        "receive: {}{}",
        testkit::stdout(&out),
        testkit::stderr(&out)
    );
    let received = d.root.join("received").join(&clone_snap);
    assert_eq!(
        std::fs::read_to_string(received.join("f")).unwrap(),
        "one",
        "{}",
        testkit::stdout(&out)
    );
    // The longest sent marker `<snapshot>@<host>` fits.
    let marker = format!("{snap}@{}", "h".repeat(MAX_MARKER_HOST_BYTES));
    assert!(marker.len() <= 255, "{}", marker.len());
    buttervolume::btrfs::snapshot(
        &d.snapshots().join(&snap),
        &d.snapshots().join(&marker),
        true,
    )
    .expect("the longest marker fits");

    // One byte more is refused with a clear error, and leaves nothing.
    for (len, tag) in [(MAX_VOLUME_BYTES + 1, "d"), (232, "e")] {
        let over = long_name(tag, len);
        let err = d.err("/VolumeDriver.Create", json!({"Name": over}));
        assert!(err.contains("at most 160 bytes"), "{err}");
        let err = d.err("/VolumeDriver.Clone", json!({"Name": vol, "Target": over}));
        assert!(err.contains("at most 160 bytes"), "{err}");
        let err = d.err(
            "/VolumeDriver.Snapshot.Restore",
            json!({"Name": snap, "Target": over}),
        );
        assert!(err.contains("at most 160 bytes"), "{err}");
        assert!(!d.volumes().join(&over).exists());
    }
    // A longer volume made before the rule (or by another tool) is still
    // listed and removable; snapshotting it says why it cannot be done.
    let legacy = long_name("f", 240);
    buttervolume::btrfs::create_subvolume(&d.volumes().join(&legacy)).unwrap();
    let list = d.ok("/VolumeDriver.List", json!({}));
    assert!(
        list["Volumes"]
            .as_array()
            .unwrap()
            .contains(&json!({"Name": legacy})),
        "{list}"
    );
    let err = d.err("/VolumeDriver.Snapshot", json!({"Name": legacy}));
    assert!(err.contains("names are at most 255 bytes"), "{err}");
    d.ok("/VolumeDriver.Create", json!({"Name": legacy}));
    d.ok("/VolumeDriver.Remove", json!({"Name": legacy}));

    // A host too long for a marker is refused before anything is sent (the
    // address is loopback: on a build without the check, nothing answers).
    let host = format!("{}@127.0.0.1", "u".repeat(MAX_MARKER_HOST_BYTES - 9));
    assert_eq!(host.len(), MAX_MARKER_HOST_BYTES + 1);
    let err = d.err(
        "/VolumeDriver.Snapshot.Send",
        json!({"Name": snap, "Host": host, "Test": true}),
    );
    assert!(err.contains("at most 61 bytes"), "{err}");
    let staging: Vec<_> = std::fs::read_dir(d.volumes().join(".staging"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(staging.is_empty(), "staging leftovers: {staging:?}");
}

/// A store on the test btrfs, driven directly so the test can hold the
/// per-volume lock and make Remove and Restore meet deterministically.
fn store(test: &str) -> (Arc<VolumeStore>, std::path::PathBuf) {
    let base = testkit::test_btrfs();
    let root = base.join(format!("{test}-{}", std::process::id()));
    if root.exists() {
        testkit::cleanup_dir(&root);
    }
    let d = |sub: &str| format!("{}/{sub}/", root.display());
    let env: HashMap<String, String> = [
        ("BUTTERVOLUME_VOLUMES_PATH", d("volumes")),
        ("BUTTERVOLUME_SNAPSHOTS_PATH", d("snapshots")),
        ("BUTTERVOLUME_TEST_REMOTE_PATH", d("received")),
        ("BUTTERVOLUME_STATE_PATH", d("state")),
        (
            "BUTTERVOLUME_SCHEDULE",
            format!("{}/config/schedule.csv", root.display()),
        ),
        (
            "BUTTERVOLUME_DOCKER_SOCKET",
            format!("{}/no-docker.sock", root.display()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = Config::resolve(&env, &HashMap::new()).unwrap();
    let store = VolumeStore::open(Arc::new(config)).unwrap();
    (Arc::new(store), root)
}

/// Waits (bounded) until `activity` holds `name`.
fn wait_for_holder(store: &VolumeStore, name: &str, activity: Activity) {
    testkit::wait_until(format!("{activity:?} to start on {name}"), 10, || {
        store.activity(name) == Some(activity)
    });
}

#[test]
fn remove_and_restore_racing_report_what_is_really_running() {
    let (store, root) = store("busy-reasons");
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            testkit::cleanup_dir(&self.0);
        }
    }
    let _cleanup = Cleanup(root);
    store.create("db", &HashMap::new()).unwrap();
    let snap = snapshots::snapshot(&store, "db").unwrap();

    // A restore in progress (held at the per-volume lock): Remove says so.
    let held = store.lock("db");
    std::thread::scope(|s| {
        let restore = s.spawn(|| snapshots::restore(&store, &snap, None, false));
        wait_for_holder(&store, "db", Activity::Restore);
        let err = store.remove("db").unwrap_err();
        assert!(matches!(err, VolumeError::Restoring(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "a restore of volume db is in progress: retry when it has finished"
        );
        assert!(!err.to_string().contains("send"), "{err}");
        drop(held);
        let backup = restore
            .join()
            .unwrap()
            .expect("the restore itself succeeds");
        assert!(backup.is_some());
    });
    assert!(buttervolume::btrfs::is_subvolume(
        &store.config().volumes_path.join("db")
    ));

    // A remove in progress: Restore says so, and the volume is then gone.
    let held = store.lock("db");
    std::thread::scope(|s| {
        let remove = s.spawn(|| store.remove("db"));
        wait_for_holder(&store, "db", Activity::Remove);
        let err = snapshots::restore(&store, &snap, None, false).unwrap_err();
        assert_eq!(err.to_string(), "volume db is being removed");
        drop(held);
        remove.join().unwrap().expect("the remove itself succeeds");
    });
    assert!(!store.config().volumes_path.join("db").exists());

    // A send in progress is still reported as a send.
    let send = store.hold("db", Activity::Send).ok().unwrap();
    let err = snapshots::restore(&store, &snap, None, false).unwrap_err();
    assert!(err.to_string().contains("a send of volume db"), "{err}");
    drop(send);
    // Nothing held any more: the restore recreates the volume.
    snapshots::restore(&store, &snap, None, false).unwrap();
    assert!(buttervolume::btrfs::is_subvolume(
        &store.config().volumes_path.join("db")
    ));
}

#[test]
fn long_host_in_a_replicate_job_is_refused() {
    let d = isolated("marker-host");
    // Loopback, port 1: a build without the check reaches nothing.
    let host = format!("{}@127.0.0.1", "u".repeat(MAX_MARKER_HOST_BYTES - 9));
    assert_eq!(host.len(), MAX_MARKER_HOST_BYTES + 1);
    let err = d.err(
        "/VolumeDriver.Schedule",
        json!({"Name": "db", "Action": format!("replicate:{host}"), "Timer": "60"}),
    );
    assert!(err.contains("at most 61 bytes"), "{err}");
    let list = d.ok("/VolumeDriver.Schedule.List", json!({}));
    assert_eq!(list["Schedule"], json!([]), "{list}");
}
