//! One restic run per backup and per restore in the common case, and the
//! repository, not this node's record, deciding every skip.

use super::*;

/// The restic runs the daemon logged (its debug line per run), from the
/// `from`-th on.
fn restic_runs(d: &Daemon, from: usize) -> Vec<String> {
    d.log_text()
        .lines()
        .filter(|l| l.contains("backup::restic") && l.contains("args=["))
        .skip(from)
        .map(str::to_string)
        .collect()
}

fn backup(d: &Daemon) -> Value {
    d.ok(
        "/VolumeDriver.Backup",
        json!({"Target": "local", "Name": "db"}),
    )
}

#[test]
fn one_restic_run_per_backup_and_restore_and_the_repository_decides_skips() {
    let (d, targets) = daemon("backuponce");
    add_target(&d, &targets, "local", "secret\n", "");
    d.ok("/VolumeDriver.Create", json!({"Name": "db"}));
    let vol = d.volumes().join("db");
    fill(&vol);
    let record = d.root.join("state/backups/local.json");
    let first = backup(&d);
    let id1 = first["Id"].as_str().unwrap().to_string();
    let seen = restic_runs(&d, 0).len();

    // A changed volume: one run, the backup, with the recorded parent; the
    // snapshot appears once restic holds it.
    std::fs::write(vol.join("f07"), b"changed\n").unwrap();
    let before = testkit::entries(&d.snapshots());
    let second = backup(&d);
    assert_eq!(second["FilesChanged"], json!(1), "{second}");
    assert_eq!(second["FilesUnmodified"], json!(40), "{second}");
    let runs = restic_runs(&d, seen);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0].contains("\"backup\""), "{runs:?}");
    assert!(
        runs[0].contains(&format!("\"--parent\", \"{id1}\"")),
        "{runs:?}"
    );
    let snap2 = second["Snapshot"].as_str().unwrap().to_string();
    let id2 = second["Id"].as_str().unwrap().to_string();
    let mut expected = before.clone();
    expected.push(snap2.clone());
    expected.sort();
    assert_eq!(testkit::entries(&d.snapshots()), expected);
    let seen = seen + 1;

    // The newest backup restored in one run, restic choosing it; the reply
    // still names its snapshot and id.
    let restored = d.ok(
        "/VolumeDriver.Backup.Restore",
        json!({"Target": "local", "Name": "db", "NewName": "copy"}),
    );
    assert_eq!(restored["Snapshot"], json!(snap2), "{restored}");
    assert_eq!(restored["Id"], json!(id2), "{restored}");
    assert_eq!(files(&d.volumes().join("copy")), files(&vol));
    let runs = restic_runs(&d, seen);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0].contains("\"restore\", \"latest\""), "{runs:?}");
    let seen = seen + 1;

    // A record rolled back (it claims the second backup is the last): the
    // volume is unchanged since snap2, which the repository holds, so
    // nothing is backed up, whatever the record says.
    let rolled_back = std::fs::read(&record).unwrap();
    std::fs::write(vol.join("f09"), b"changed again\n").unwrap();
    let third = backup(&d);
    let snap3 = third["Snapshot"].as_str().unwrap().to_string();
    let id3 = third["Id"].as_str().unwrap().to_string();
    std::fs::write(&record, &rolled_back).unwrap();
    let again = backup(&d);
    assert_eq!(again["Created"], json!(false), "{again}");
    assert_eq!(again["Snapshot"], json!(snap3), "{again}");
    assert!(again["Id"].as_str().unwrap().starts_with(&id3), "{again}");
    // A lost record: the same.
    std::fs::remove_file(&record).unwrap();
    let again = backup(&d);
    assert_eq!(again["Created"], json!(false), "{again}");
    let seen = seen + 3;
    let skips = restic_runs(&d, seen - 2);
    assert!(
        skips.len() == 2 && skips.iter().all(|r| r.contains("\"snapshots\"")),
        "one listing per skip: {skips:#?}"
    );
    assert_eq!(backups(&d, "db").len(), 3);
    let seen = seen + 1;

    // The last backup forgotten behind our back while the record says the
    // volume's state is in the repository: it is backed up again.
    let out = restic(&d, &["forget", &id3]);
    assert!(out.status.success(), "{}", stderr(&out));
    let redo = backup(&d);
    assert_eq!(redo["Created"], json!(true), "{redo}");
    assert_eq!(redo["Snapshot"], json!(snap3), "{redo}");
    let runs = restic_runs(&d, seen);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs[0].contains("\"snapshots\""), "{runs:?}");
    assert!(
        runs[1].contains(&format!("\"--parent\", \"{id2}")),
        "{runs:?}"
    );
    let id4 = redo["Id"].as_str().unwrap().to_string();
    let seen = seen + 2;

    // The recorded parent forgotten too: one more run, without a parent.
    let out = restic(&d, &["forget", &id4]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(vol.join("f10"), b"and again\n").unwrap();
    let fifth = backup(&d);
    assert_eq!(fifth["Created"], json!(true), "{fifth}");
    let runs = restic_runs(&d, seen);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs[0].contains(&format!("\"--parent\", \"{id4}\"")));
    assert!(!runs[1].contains("--parent"), "{runs:?}");
    let plain = d.root.join("plain");
    let id5 = fifth["Id"].as_str().unwrap();
    let out = restic(&d, &["restore", id5, "--target", plain.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(files(&plain), files(&vol));
}
