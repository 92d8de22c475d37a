//! The reference buttervolume 3.13 CLI (installed from PyPI in a venv by
//! `scripts/reference-venv.sh`) drives THIS daemon: existing scripts and the
//! cluster's deploy handler must work unchanged. Where both CLIs print
//! something deterministic, the outputs must be byte-identical.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{stderr, stdout, Daemon};
use serde_json::json;

fn reference_bin() -> PathBuf {
    let venv = std::env::var("BUTTERVOLUME_REFERENCE_VENV").unwrap_or("/opt/bv-ref".into());
    let bin = PathBuf::from(venv).join("bin/buttervolume");
    assert!(
        bin.exists(),
        "reference CLI missing at {}: run scripts/reference-venv.sh",
        bin.display()
    );
    bin
}

fn reference(d: &Daemon, args: &[&str]) -> Output {
    Command::new(reference_bin())
        .args(args)
        .env("BUTTERVOLUME_SOCKET", &d.socket)
        .output()
        .unwrap()
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
