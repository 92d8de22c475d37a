//! End to end with a real Docker daemon: the plugin runs in legacy mode
//! (socket in /run/docker/plugins), Docker creates, mounts, inspects and
//! removes volumes through it, containers read and write real data on btrfs.
//!
//! Needs dockerd and the `bv-busybox` image: `scripts/start-dockerd.sh`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{run, Daemon};
use serde_json::json;

fn require_docker() {
    let ok = Command::new("docker")
        .args(["image", "inspect", "bv-busybox:latest"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "dockerd with the bv-busybox image is required: run scripts/start-dockerd.sh"
    );
}

/// A daemon serving Docker as legacy plugin `driver`.
fn legacy_daemon(test: &str, driver: &str) -> Daemon {
    require_docker();
    let socket = PathBuf::from(format!("/run/docker/plugins/{driver}.sock"));
    Daemon::start_with(test, Some(socket), &[])
}

fn docker(args: &[&str]) -> String {
    run("docker", args).trim().to_string()
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn docker_volume_lifecycle_with_containers() {
    let d = legacy_daemon("docker", "btrfs");
    let vol = format!("e2e{}", std::process::id());
    docker(&[
        "volume",
        "create",
        "-d",
        "btrfs",
        "-o",
        "copyonwrite=false",
        &vol,
    ]);
    let subvolume = d.volumes().join(&vol);
    assert!(buttervolume::btrfs::is_subvolume(&subvolume));

    let mount = format!("{vol}:/data");
    docker(&[
        "run",
        "--rm",
        "-v",
        &mount,
        "bv-busybox",
        "sh",
        "-c",
        "echo hello > /data/f",
    ]);
    let read = docker(&["run", "--rm", "-v", &mount, "bv-busybox", "cat", "/data/f"]);
    assert_eq!(read, "hello");
    assert_eq!(
        std::fs::read_to_string(subvolume.join("f")).unwrap(),
        "hello\n"
    );
    let flags = buttervolume::btrfs::inode_flags(&subvolume.join("f")).unwrap();
    assert_ne!(
        flags & buttervolume::btrfs::FS_NOCOW_FL,
        0,
        "file is not NOCOW"
    );

    let ls = docker(&[
        "volume",
        "ls",
        "-f",
        "driver=btrfs",
        "--format",
        "{{.Name}}",
    ]);
    assert!(ls.lines().any(|l| l == vol), "{ls}");
    let inspect: serde_json::Value =
        serde_json::from_str(&docker(&["volume", "inspect", &vol])).unwrap();
    assert_eq!(inspect[0]["Mountpoint"], subvolume.to_str().unwrap());
    assert_eq!(inspect[0]["Status"]["Options"]["copyonwrite"], "false");
    assert_eq!(inspect[0]["Status"]["NonMigrable"], false);

    // Snapshot, change, restore from the CLI: the next container sees the old data.
    let snap = d.cli(&["snapshot", &vol]);
    assert!(snap.status.success());
    docker(&[
        "run",
        "--rm",
        "-v",
        &mount,
        "bv-busybox",
        "sh",
        "-c",
        "echo changed > /data/f",
    ]);
    let restore = d.cli(&["restore", String::from_utf8_lossy(&snap.stdout).trim()]);
    assert!(restore.status.success(), "{}", common::stderr(&restore));
    let read = docker(&["run", "--rm", "-v", &mount, "bv-busybox", "cat", "/data/f"]);
    assert_eq!(read, "hello");

    // A running container pins the volume: restore refused, remove refused.
    let cid = docker(&["run", "-d", "-v", &mount, "bv-busybox", "sleep", "60"]);
    let restore = d.cli(&["restore", &vol]);
    assert_eq!(restore.status.code(), Some(1));
    assert!(
        common::stderr(&restore).contains("mounted"),
        "{}",
        common::stderr(&restore)
    );
    let (_, reply) = d.post("/VolumeDriver.Remove", &json!({"Name": vol}));
    assert!(reply["Err"].as_str().unwrap().contains("in use"), "{reply}");
    docker(&["rm", "-f", &cid]);

    docker(&["volume", "rm", &vol]);
    assert!(!subvolume.exists());
    let out = Command::new("docker")
        .args(["volume", "inspect", &vol])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn labels_reach_the_volume_metadata_and_survive_restore() {
    let d = legacy_daemon("labels", "bvlabels");
    let vol = format!("lbl{}", std::process::id());
    docker(&[
        "volume",
        "create",
        "-d",
        "bvlabels",
        "--label",
        "com.github.mlfmonde.cluster.nonmigrable=True",
        "--label",
        "team=db",
        &vol,
    ]);
    wait_for("labels to be recorded", || {
        let reply = d.ok("/VolumeDriver.Get", json!({"Name": vol}));
        reply["Volume"]["Status"]["NonMigrable"] == true
    });
    let reply = d.ok("/VolumeDriver.Get", json!({"Name": vol}));
    assert_eq!(reply["Volume"]["Status"]["Labels"]["team"], "db");
    // Restore keeps the flag and the labels.
    let snap = d.ok("/VolumeDriver.Snapshot", json!({"Name": vol}))["Snapshot"].clone();
    d.ok("/VolumeDriver.Snapshot.Restore", json!({"Name": snap}));
    let reply = d.ok("/VolumeDriver.Get", json!({"Name": vol}));
    assert_eq!(reply["Volume"]["Status"]["NonMigrable"], true);
    assert_eq!(reply["Volume"]["Status"]["Labels"]["team"], "db");
    let out = d.cli(&["inspect", &vol]);
    assert!(common::stdout(&out).contains("NonMigrable: true"));
    docker(&["volume", "rm", &vol]);
}

#[test]
fn compose_file_with_driver_opts_and_labels() {
    let d = legacy_daemon("compose", "bvcompose");
    let dir = tempfile::tempdir().unwrap();
    let project = format!("bvc{}", std::process::id());
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        r#"version: "2.4"
services:
  app:
    image: bv-busybox
    command: ["sh", "-c", "echo composed > /data/f"]
    volumes:
      - data:/data
volumes:
  data:
    driver: bvcompose
    driver_opts:
      copyonwrite: "false"
      compression: ""
    labels:
      com.github.mlfmonde.cluster.nonmigrable: "True"
"#,
    )
    .unwrap();
    let compose = |args: &[&str]| {
        let out = Command::new("docker-compose")
            .env("COMPOSE_HTTP_TIMEOUT", "300")
            .args(["-p", &project])
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("docker-compose is required (apt-get install docker-compose)");
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    compose(&["up", "--abort-on-container-exit"]);
    let vol = format!("{project}_data");
    let path = d.volumes().join(&vol);
    assert_eq!(
        std::fs::read_to_string(path.join("f")).unwrap(),
        "composed\n"
    );
    wait_for("compose labels", || {
        d.ok("/VolumeDriver.Get", json!({"Name": vol}))["Volume"]["Status"]["NonMigrable"] == true
    });
    compose(&["down", "-v"]);
    assert!(!path.exists(), "compose down -v did not remove the volume");
}

#[test]
fn doctor_finds_and_fixes_local_duplicates_and_stale_sockets() {
    let mut d = legacy_daemon("doctor", "bvdoc");
    let pid = std::process::id();
    let (dup, clash) = (format!("dup{pid}"), format!("clash{pid}"));
    // What a reboot with the plugin not yet up produces: a `local` volume
    // with the app's data, beside the (empty) btrfs one.
    for name in [&dup, &clash] {
        docker(&["volume", "create", name]);
        let mount = format!("{name}:/data");
        docker(&[
            "run",
            "--rm",
            "-v",
            &mount,
            "bv-busybox",
            "sh",
            "-c",
            "echo local > /data/f",
        ]);
        d.ok("/VolumeDriver.Create", json!({"Name": name}));
    }
    std::fs::write(d.volumes().join(&clash).join("f"), "btrfs\n").unwrap();
    // Docker shows the local one; the btrfs volume is shadowed.
    let ls = docker(&[
        "volume",
        "ls",
        "-f",
        "driver=local",
        "--format",
        "{{.Driver}} {{.Name}}",
    ]);
    assert!(ls.contains(&format!("local {dup}")), "{ls}");

    // A stale socket in a private RUNPATH.
    let runpath = d.root.join("run");
    std::fs::create_dir_all(runpath.join("plugins")).unwrap();
    drop(std::os::unix::net::UnixListener::bind(runpath.join("plugins/old.sock")).unwrap());
    d.env
        .push(("BUTTERVOLUME_RUNPATH".into(), runpath.display().to_string()));

    let out = d.cli(&["doctor"]);
    let text = common::stdout(&out);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        text.contains(&format!("volume {dup} exists both as a `local`")),
        "{text}"
    );
    assert!(text.contains("would copy the local data"), "{text}");
    assert!(text.contains("stale plugin socket"), "{text}");
    assert!(
        runpath.join("plugins/old.sock").exists(),
        "doctor without --fix changed things"
    );

    let out = d.cli(&["doctor", "--fix"]);
    let text = common::stdout(&out);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(text.contains("fixed"), "{text}");
    assert!(text.contains("both copies hold different data"), "{text}");
    assert_eq!(
        std::fs::read_to_string(d.volumes().join(&dup).join("f")).unwrap(),
        "local\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.volumes().join(&clash).join("f")).unwrap(),
        "btrfs\n"
    );
    assert!(!runpath.join("plugins/old.sock").exists());
    let ls = docker(&[
        "volume",
        "ls",
        "-f",
        "driver=local",
        "--format",
        "{{.Driver}} {{.Name}}",
    ]);
    assert!(!ls.contains(&format!("local {dup}")), "{ls}");
    assert!(
        ls.contains(&format!("local {clash}")),
        "the conflicting copy was removed: {ls}"
    );
    let ls = docker(&[
        "volume",
        "ls",
        "-f",
        "driver=bvdoc",
        "--format",
        "{{.Driver}} {{.Name}}",
    ]);
    assert!(ls.contains(&format!("bvdoc {dup}")), "{ls}");

    // Clean up: Docker's local record, then our volumes.
    docker(&["volume", "rm", &clash]);
    for name in [&clash, &dup] {
        d.ok("/VolumeDriver.Remove", json!({"Name": name}));
    }
    d.stop();
}
