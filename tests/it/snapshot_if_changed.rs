//! `Snapshot` with `IfChanged` on real btrfs: an unchanged volume gets no
//! new snapshot (generation vs. the newest snapshot's creation), a write or
//! a restore makes the next one real.

use serde_json::{json, Value};
use testkit::{stdout, Daemon};

fn snapshot_if_changed(d: &Daemon, volume: &str) -> (String, bool) {
    let reply = d.ok(
        "/VolumeDriver.Snapshot",
        json!({"Name": volume, "IfChanged": true}),
    );
    (
        reply["Snapshot"].as_str().unwrap().to_string(),
        reply["Created"].as_bool().unwrap(),
    )
}

#[test]
fn unchanged_volumes_are_not_snapshotted_again() {
    let d = Daemon::start("ifchanged");
    d.ok("/VolumeDriver.Create", json!({"Name": "db"}));
    let file = d.volumes().join("db").join("f");
    std::fs::write(&file, "one").unwrap();

    let (first, created) = snapshot_if_changed(&d, "db");
    assert!(created);
    let (again, created) = snapshot_if_changed(&d, "db");
    assert_eq!((again.as_str(), created), (first.as_str(), false));

    // A write not yet flushed by the kernel still counts.
    std::fs::write(&file, "two").unwrap();
    let (second, created) = snapshot_if_changed(&d, "db");
    assert!(created && second != first);
    let snapshot_file = d.snapshots().join(&second).join("f");
    assert_eq!(std::fs::read_to_string(snapshot_file).unwrap(), "two");

    // A plain Snapshot always creates one, and says so.
    let plain = d.ok("/VolumeDriver.Snapshot", json!({"Name": "db"}));
    assert_eq!(plain["Created"], Value::Bool(true));

    // After a restore, the newest snapshot is the backup of what was
    // swapped out: not the restored content.
    d.ok(
        "/VolumeDriver.Snapshot.Restore",
        json!({"Name": first, "Target": "db"}),
    );
    let (after, created) = snapshot_if_changed(&d, "db");
    assert!(created, "restored content must get its own snapshot");
    let restored = d.snapshots().join(&after).join("f");
    assert_eq!(std::fs::read_to_string(restored).unwrap(), "one");

    // The CLI flag prints the snapshot that holds the state.
    let out = d.cli(&["snapshot", "--if-changed", "db"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), after);
}

/// An overwrite in place still in the page cache (no truncate, no fsync:
/// an app that stops with its writes not written back yet) is a change:
/// the follow's last Unmount and a handover's final call must send it,
/// not the state before it.
#[test]
fn an_overwrite_still_in_the_page_cache_is_a_change() {
    use std::io::{Seek, SeekFrom, Write};
    let d = Daemon::start("ifchanged-cache");
    d.ok("/VolumeDriver.Create", json!({"Name": "db"}));
    let file = d.volumes().join("db").join("big");
    std::fs::write(&file, vec![1u8; 4 << 20]).unwrap();
    let (first, created) = snapshot_if_changed(&d, "db");
    assert!(created);

    let mut f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.seek(SeekFrom::Start(1 << 20)).unwrap();
    f.write_all(&vec![2u8; 1 << 20]).unwrap();
    drop(f);
    let (second, created) = snapshot_if_changed(&d, "db");
    assert!(
        created && second != first,
        "the overwrite was not seen: {second} still holds the state"
    );
    let kept = std::fs::read(d.snapshots().join(&second).join("big")).unwrap();
    assert_eq!(kept[(1 << 20) + 7], 2, "the snapshot lacks the overwrite");
}
