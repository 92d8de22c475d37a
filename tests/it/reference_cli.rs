//! The reference buttervolume 3.13 CLI (installed from PyPI in a venv by
//! `scripts/reference-venv.sh`) drives THIS daemon: existing scripts and the
//! cluster's deploy handler must work unchanged. Where both CLIs print
//! something deterministic, the outputs must be byte-identical.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::json;
use testkit::{stderr, stdout, Daemon};

/// A Python buttervolume CLI (`bin`), run against `d`.
fn python_cli(bin: PathBuf, d: &Daemon, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env("BUTTERVOLUME_SOCKET", &d.socket)
        .output()
        .unwrap()
}

/// The reference, 3.13.
fn reference(d: &Daemon, args: &[&str]) -> Output {
    python_cli(testkit::reference_bin(), d, args)
}

#[test]
fn reference_cli_drives_our_daemon() {
    let d = Daemon::start("refcli");
    d.ok("/VolumeDriver.Create", json!({"Name": "web"}));
    std::fs::write(d.volumes().join("web/f"), "1").unwrap();

    // snapshot prints the new snapshot's name.
    let out = reference(&d, &["snapshot", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let snap = stdout(&out).trim().to_string();
    assert!(snap.starts_with("web@"), "{snap}");
    assert!(d.snapshots().join(&snap).exists());

    // snapshots <vol>: identical listing from both CLIs.
    let ours = d.cli(&["snapshots", "web"]);
    let theirs = reference(&d, &["snapshots", "web"]);
    assert_eq!(stdout(&ours), stdout(&theirs));
    assert_eq!(stdout(&theirs), format!("{snap}\n"));

    // restore prints the backup's name, and the data is restored.
    std::fs::write(d.volumes().join("web/f"), "2").unwrap();
    let out = reference(&d, &["restore", &snap]);
    assert!(out.status.success(), "{}", stderr(&out));
    let backup = stdout(&out).trim().to_string();
    assert!(backup.starts_with("web@") && backup != snap);
    assert_eq!(
        std::fs::read_to_string(d.volumes().join("web/f")).unwrap(),
        "1"
    );

    // restore <vol> (latest) and restore <snapshot> <target> (migration).
    let out = reference(&d, &["restore", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = reference(&d, &["restore", &snap, "moved"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "no backup when the target is new");
    assert_eq!(
        std::fs::read_to_string(d.volumes().join("moved/f")).unwrap(),
        "1"
    );

    // clone prints the new volume's name; same output from ours.
    let theirs = reference(&d, &["clone", "web", "web2"]);
    let ours = d.cli(&["clone", "web", "web3"]);
    assert_eq!(stdout(&theirs), "web2\n");
    assert_eq!(stdout(&ours), "web3\n");

    // rm prints nothing; an unknown snapshot is exit 1 with ERROR:root: on both.
    let out = reference(&d, &["rm", &backup]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "");
    let theirs = reference(&d, &["rm", &backup]);
    let ours = d.cli(&["rm", &backup]);
    assert_eq!(theirs.status.code(), Some(1));
    assert_eq!(ours.status.code(), Some(1));
    assert!(
        stderr(&theirs).contains("ERROR:root:"),
        "{}",
        stderr(&theirs)
    );
    assert!(stderr(&ours).starts_with("ERROR:root:"));

    // purge: the dry run deletes nothing, the real one deletes what the
    // rule says (everything older than 1 minute here, the marker rule aside).
    let before = std::fs::read_dir(d.snapshots()).unwrap().count();
    let out = reference(&d, &["purge", "--dryrun", "1m:2m", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(d.snapshots()).unwrap().count(), before);
    let out = reference(&d, &["purge", "1m:2m", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // snapshot of an unknown volume: exit 1 on both.
    assert_eq!(reference(&d, &["snapshot", "nope"]).status.code(), Some(1));
    assert_eq!(d.cli(&["snapshot", "nope"]).status.code(), Some(1));
}

/// The 3.4 CLI (what the cluster's consul image builds) talks to this
/// daemon too: every verb it has, with its own request shapes.
fn reference34(d: &Daemon, args: &[&str]) -> Output {
    python_cli(testkit::reference34_bin(), d, args)
}

#[test]
fn reference_34_cli_drives_our_daemon() {
    // Port 9 on loopback: nothing answers there, so send and sync fail fast.
    let d = Daemon::builder("ref34").env("SSH_PORT", "9").start();
    for v in ["app", "other"] {
        d.ok("/VolumeDriver.Create", json!({"Name": v}));
    }
    std::fs::write(d.volumes().join("app/f"), "1").unwrap();
    let ok = |args: &[&str]| {
        let out = reference34(&d, args);
        assert!(out.status.success(), "3.4 {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let snap = ok(&["snapshot", "app"]).trim().to_string();
    assert!(snap.starts_with("app@"), "{snap}");
    let other = ok(&["snapshot", "other"]).trim().to_string();

    // snapshots V: only V's (3.4 POSTs {"Name": V}); without V: all.
    assert_eq!(ok(&["snapshots", "app"]), format!("{snap}\n"));
    let all = ok(&["snapshots"]);
    assert!(all.contains(&snap) && all.contains(&other), "{all}");

    // schedule / scheduled, in 3.4's output format.
    ok(&["schedule", "snapshot", "60", "app"]);
    ok(&["schedule", "purge:1h:1d:1w:4w:1y", "1440", "app"]);
    let listed = ok(&["scheduled"]);
    assert!(listed.contains("snapshot 60 app"), "{listed}");
    assert!(listed.contains("purge:1h:1d:1w:4w:1y 1440 app"), "{listed}");
    ok(&["schedule", "snapshot", "0", "app"]);
    assert!(!ok(&["scheduled"]).contains("snapshot 60 app"));

    // restore <snapshot>, restore <vol>, restore <snapshot> <target>.
    std::fs::write(d.volumes().join("app/f"), "2").unwrap();
    let backup = ok(&["restore", &snap]).trim().to_string();
    assert!(backup.starts_with("app@") && backup != snap, "{backup}");
    assert_eq!(
        std::fs::read_to_string(d.volumes().join("app/f")).unwrap(),
        "1"
    );
    ok(&["restore", "app"]);
    ok(&["restore", &snap, "migrated"]);
    assert_eq!(
        std::fs::read_to_string(d.volumes().join("migrated/f")).unwrap(),
        "1"
    );

    // clone, rm, purge --dryrun.
    assert_eq!(ok(&["clone", "app", "app2"]), "app2\n");
    ok(&["rm", &backup]);
    assert!(!d.snapshots().join(&backup).exists());
    let before = std::fs::read_dir(d.snapshots()).unwrap().count();
    ok(&["purge", "--dryrun", "1m:2m", "app"]);
    assert_eq!(std::fs::read_dir(d.snapshots()).unwrap().count(), before);

    // Failures are exit 1 with the daemon's message on stderr, as in 3.4.
    for args in [
        &["snapshot", "nope"][..],
        &["rm", "app@nope"],
        // Loopback only; nothing listens there: a clear error, not a hang.
        &["send", "127.0.0.1", &snap],
        &["sync", "app", "127.0.0.1"],
    ] {
        let out = reference34(&d, args);
        assert_eq!(out.status.code(), Some(1), "3.4 {args:?}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("ERROR:root:"),
            "3.4 {args:?}: {}",
            stderr(&out)
        );
    }
}
