//! Backups to a real restic repository (Debian's `restic`, a local
//! repository inside the test btrfs): backup, skip of an unchanged volume,
//! incremental second backup, list, restore into a new volume and in
//! place, a plain `restic restore` of our backup, and the bad inputs;
//! [`once`]: one restic run per backup and restore, skips decided by the
//! repository; [`faults`]: a locked repository, a full target; [`sftp`]:
//! a repository on a second node over SFTP.

mod faults;
mod once;
mod sftp;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use testkit::{stderr, stdout, Daemon};

/// A daemon whose BACKUP_TARGETS_PATH is `<root>/targets`.
fn daemon(test: &str) -> (Daemon, PathBuf) {
    let mut d = Daemon::start(test);
    let targets = d.root.join("targets");
    std::fs::create_dir_all(&targets).unwrap();
    d.env.push((
        "BUTTERVOLUME_BACKUP_TARGETS_PATH".into(),
        targets.display().to_string(),
    ));
    d.stop();
    d.spawn();
    (d, targets)
}

fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn add_target(d: &Daemon, targets: &Path, name: &str, password: &str, extra: &str) -> PathBuf {
    let pw = d.root.join(format!("{name}.pw"));
    private_file(&pw, password);
    let repo = d.root.join("repo");
    let file = targets.join(format!("{name}.env"));
    private_file(
        &file,
        &format!(
            "RESTIC_REPOSITORY={}\nRESTIC_PASSWORD_FILE={}\n{extra}",
            repo.display(),
            pw.display()
        ),
    );
    file
}

fn cli_ok(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

fn cli_fails(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
    stderr(&out)
}

fn restic(d: &Daemon, args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .args(args)
        .env("RESTIC_REPOSITORY", d.root.join("repo"))
        .env("RESTIC_PASSWORD_FILE", d.root.join("local.pw"))
        .env("RESTIC_CACHE_DIR", d.root.join("restic-cache"))
        .output()
        .unwrap()
}

/// Every regular file under `dir` with its content, sorted.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn fill(volume: &Path) {
    std::fs::create_dir_all(volume.join("sub/deeper")).unwrap();
    for i in 0..40 {
        std::fs::write(
            volume.join(format!("f{i:02}")),
            format!("file {i}\n").repeat(100),
        )
        .unwrap();
    }
    std::fs::write(volume.join("sub/deeper/table"), b"rows 1..10\n").unwrap();
}

fn backups(d: &Daemon, volume: &str) -> Vec<Value> {
    let out = cli_ok(d, &["backups", "local", volume, "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["Backups"].as_array().unwrap().clone()
}

#[test]
fn backup_skip_incremental_list_and_restores() {
    let (d, targets) = daemon("backup");
    add_target(&d, &targets, "local", "secret\n", "");
    d.ok("/VolumeDriver.Create", json!({"Name": "db"}));
    let vol = d.volumes().join("db");
    fill(&vol);

    // First backup: the repository is made, one snapshot taken and named.
    let first = cli_ok(&d, &["backup", "local", "db"]);
    let mut words = first.split_whitespace();
    let snap1 = words.next().unwrap().to_string();
    let id1 = words.next().unwrap().to_string();
    assert!(snap1.starts_with("db@"), "{first}");
    assert!(d.snapshots().join(&snap1).exists());
    assert!(d.root.join("repo/config").exists());
    assert!(d.log_text().contains("initialising the restic repository"));

    // Unchanged volume: no new local snapshot, no new backup.
    let again = cli_ok(&d, &["backup", "local", "db"]);
    assert!(again.contains("already in local"), "{again}");
    assert!(again.starts_with(&snap1), "{again}");
    assert_eq!(backups(&d, "db").len(), 1);

    // One file of 41 changed: restic reads that one only.
    std::fs::write(vol.join("f07"), b"changed\n").unwrap();
    let second = d.ok(
        "/VolumeDriver.Backup",
        json!({"Target": "local", "Name": "db"}),
    );
    assert_eq!(second["Created"], json!(true));
    assert_eq!(second["FilesChanged"], json!(1), "{second}");
    assert_eq!(second["FilesNew"], json!(0), "{second}");
    assert_eq!(second["FilesUnmodified"], json!(40), "{second}");
    let snap2 = second["Snapshot"].as_str().unwrap().to_string();
    let id2 = second["Id"].as_str().unwrap().to_string();
    assert_ne!(snap1, snap2);

    let list = backups(&d, "db");
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["Volume"], json!("db"));
    assert_eq!(list[0]["Snapshot"], json!(snap1));
    assert!(list[0]["Id"].as_str().unwrap().starts_with(&id1));
    assert_eq!(list[1]["Snapshot"], json!(snap2));
    assert!(
        list[1]["Id"].as_str().unwrap().starts_with(&id2),
        "{list:?}"
    );
    assert!(list[1]["Bytes"].as_u64().unwrap() > 40 * 700, "{list:?}");

    // Without the plugin: plain restic gives the volume's files.
    let plain = d.root.join("plain");
    let out = restic(&d, &["restore", &id2, "--target", plain.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files(&plain), files(&vol));

    // Into a new volume, from the first backup by its snapshot name.
    let out = cli_ok(&d, &["restore-backup", "local", &snap1, "old"]);
    assert_eq!(out.trim(), "old");
    let old = d.volumes().join("old");
    assert!(buttervolume::btrfs::is_subvolume(&old));
    assert_eq!(
        std::fs::read(old.join("f07")).unwrap(),
        "file 7\n".repeat(100).as_bytes()
    );
    assert_eq!(files(&old).len(), 41);
    let inspect = d.ok("/VolumeDriver.Get", json!({"Name": "old"}));
    assert!(
        inspect["Volume"]["Mountpoint"].as_str().is_some(),
        "{inspect}"
    );
    // An existing volume is never the target of a restore into a new name
    // that exists... it is restored in place instead (not mounted).
    std::fs::write(vol.join("f07"), b"a mistake\n").unwrap();
    std::fs::remove_file(vol.join("f08")).unwrap();
    let out = cli_ok(&d, &["restore-backup", "local", "db"]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("db"));
    let kept = lines
        .next()
        .expect("the previous state's snapshot")
        .to_string();
    assert_eq!(std::fs::read(vol.join("f07")).unwrap(), b"changed\n");
    assert!(vol.join("f08").exists());
    assert_eq!(
        std::fs::read(d.snapshots().join(&kept).join("f07")).unwrap(),
        b"a mistake\n"
    );
    assert_eq!(files(&vol), files(&plain));
    // Nothing left in staging.
    let staging: Vec<_> = std::fs::read_dir(d.volumes().join(".staging"))
        .map(|r| r.flatten().collect())
        .unwrap_or_default();
    assert!(staging.is_empty(), "{staging:?}");

    // restic's check, reading a part of the data.
    let check = cli_ok(&d, &["check-backups", "local", "--read-data-subset", "50%"]);
    assert!(check.contains("no errors were found"), "{check}");
    let err = cli_fails(&d, &["check-backups", "local", "--read-data-subset", "all"]);
    assert!(err.contains("expected n% or n/t"), "{err}");

    // A mounted volume is not restored in place.
    d.ok("/VolumeDriver.Mount", json!({"Name": "db", "ID": "c1"}));
    std::fs::write(vol.join("f07"), b"live\n").unwrap();
    let err = cli_fails(&d, &["restore-backup", "local", "db"]);
    assert!(err.contains("mounted"), "{err}");
    assert_eq!(std::fs::read(vol.join("f07")).unwrap(), b"live\n");
}

#[test]
fn bad_inputs_are_clear_errors_that_change_nothing() {
    let (d, targets) = daemon("backupfaults");
    add_target(&d, &targets, "local", "secret\n", "");
    d.ok("/VolumeDriver.Create", json!({"Name": "v"}));
    fill(&d.volumes().join("v"));
    cli_ok(&d, &["backup", "local", "v"]);
    std::fs::write(d.volumes().join("v/f00"), b"new\n").unwrap();
    let before = testkit::entries(&d.snapshots());

    // Wrong password (same repository, another password file).
    add_target(&d, &targets, "wrongpw", "not the secret\n", "");
    let err = cli_fails(&d, &["backup", "wrongpw", "v"]);
    assert!(
        err.starts_with("ERROR:root:") && err.contains("wrong password"),
        "{err}"
    );
    // No such target.
    let err = cli_fails(&d, &["backup", "nope", "v"]);
    assert!(err.contains("no backup target nope"), "{err}");
    let err = cli_fails(&d, &["backup", "../local", "v"]);
    assert!(err.contains("invalid backup target name"), "{err}");
    // A target file others may read.
    let open = add_target(&d, &targets, "open", "secret\n", "");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = cli_fails(&d, &["backup", "open", "v"]);
    assert!(
        err.contains("refusing") && err.contains("open.env"),
        "{err}"
    );
    // A password file others may read.
    add_target(&d, &targets, "openpw", "secret\n", "");
    std::fs::set_permissions(
        d.root.join("openpw.pw"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let err = cli_fails(&d, &["backups", "openpw"]);
    assert!(
        err.contains("refusing") && err.contains("openpw.pw"),
        "{err}"
    );
    // An unknown volume.
    let err = cli_fails(&d, &["backup", "local", "ghost"]);
    assert!(err.contains("no such volume"), "{err}");
    // An unreachable repository (nothing listens on 127.0.0.1:1): not
    // mistaken for an absent one, nothing initialised.
    private_file(
        &targets.join("down.env"),
        &format!(
            "RESTIC_REPOSITORY=rest:http://127.0.0.1:1/\nRESTIC_PASSWORD_FILE={}\n",
            d.root.join("local.pw").display()
        ),
    );
    let err = cli_fails(&d, &["backup", "down", "v"]);
    assert!(err.contains("cannot be reached"), "{err}");
    // No backup of that volume there.
    d.ok("/VolumeDriver.Create", json!({"Name": "w"}));
    let err = cli_fails(&d, &["restore-backup", "local", "w"]);
    assert!(err.contains("no backup of volume w"), "{err}");

    assert_eq!(testkit::entries(&d.snapshots()), before);
    assert_eq!(std::fs::read(d.volumes().join("v/f00")).unwrap(), b"new\n");
    assert_eq!(backups(&d, "v").len(), 1);
}

/// The scheduled job's last result for volume `name` and `action`.
fn last_result(d: &Daemon, name: &str, action: &str) -> String {
    // LastResult comes with Detail only (the reference's keys otherwise).
    let (_, text) = testkit::raw_request(
        &d.socket,
        "GET",
        "/VolumeDriver.Schedule.List",
        br#"{"Detail": true}"#,
    );
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    list["Schedule"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["Name"] == name && j["Action"] == action)
        .and_then(|j| j["LastResult"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn scheduled_backups_thin_by_keep_and_fail_visibly() {
    let (mut d, targets) = daemon("backupsched");
    d.env.push(("BUTTERVOLUME_TIMER".into(), "1".into()));
    d.stop();
    d.spawn();
    add_target(&d, &targets, "local", "secret\n", "KEEP=1h:1d\n");
    add_target(&d, &targets, "wrongpw", "not the secret\n", "");
    d.ok("/VolumeDriver.Create", json!({"Name": "k"}));
    d.ok("/VolumeDriver.Create", json!({"Name": "other"}));
    fill(&d.volumes().join("k"));
    fill(&d.volumes().join("other"));
    cli_ok(&d, &["backup", "local", "other"]);
    // Three old backups of k, made by hand with restic's --time: older
    // than the pattern's longest part, so KEEP forgets them once a new
    // one exists; "other" has its own and keeps it.
    let old = d.root.join("old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("x"), b"old\n").unwrap();
    for days in [5, 4, 3] {
        let time = (chrono::Local::now() - chrono::Duration::days(days))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        let out = Command::new("restic")
            .args([
                "backup",
                "--time",
                &time,
                "--tag",
                "buttervolume,volume:k",
                ".",
            ])
            .current_dir(&old)
            .env("RESTIC_REPOSITORY", d.root.join("repo"))
            .env("RESTIC_PASSWORD_FILE", d.root.join("local.pw"))
            .env("RESTIC_CACHE_DIR", d.root.join("restic-cache"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(backups(&d, "k").len(), 3);

    for (volume, action) in [
        ("k", "backup:local"),
        ("other", "backup:wrongpw"),
        ("k", "check-backups:local"),
    ] {
        cli_ok(&d, &["schedule", action, "60", volume]);
    }
    testkit::wait_until("the three jobs to run", 120, || {
        !last_result(&d, "k", "backup:local").is_empty()
            && !last_result(&d, "other", "backup:wrongpw").is_empty()
            && !last_result(&d, "k", "check-backups:local").is_empty()
    });
    let done = last_result(&d, "k", "backup:local");
    assert!(
        done.contains("backed up k@") && done.contains("forgot 3 old backup(s)"),
        "{done}"
    );
    let left = backups(&d, "k");
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0]["Snapshot"].as_str().unwrap().starts_with("k@"));
    assert_eq!(backups(&d, "other").len(), 1);
    let failed = last_result(&d, "other", "backup:wrongpw");
    assert!(
        failed.contains("error") && failed.contains("wrong password"),
        "{failed}"
    );
    let check = last_result(&d, "k", "check-backups:local");
    assert!(check.contains("no errors were found"), "{check}");
    // Status: each volume's last backup per target, the failure, the check.
    let (_, status) = d.get("/VolumeDriver.Status");
    let vol = |name: &str| -> Value {
        status["Volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["Name"] == name)
            .unwrap()
            .clone()
    };
    let k = vol("k")["Backups"].clone();
    assert_eq!(k[0]["Target"], json!("local"), "{k}");
    assert_eq!(k[0]["Snapshot"], left[0]["Snapshot"], "{k}");
    assert!(
        left[0]["Id"]
            .as_str()
            .unwrap()
            .starts_with(k[0]["Id"].as_str().unwrap()),
        "{k}"
    );
    assert!(k[0]["Bytes"].as_u64().unwrap() > 0, "{k}");
    assert_eq!(k[0]["Timer"], json!("60"), "{k}");
    assert_eq!(k[0]["LastCheckOk"], json!(true), "{k}");
    let other = vol("other")["Backups"].clone();
    let wrong = other
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["Target"] == "wrongpw")
        .unwrap();
    assert!(
        wrong["LastError"]
            .as_str()
            .unwrap()
            .contains("wrong password"),
        "{other}"
    );
    assert!(wrong["Snapshot"].is_null(), "{other}");
    // A bad target name is refused when scheduled.
    let err = cli_fails(&d, &["schedule", "backup:../x", "60", "k"]);
    assert!(err.contains("invalid backup target name"), "{err}");
}
