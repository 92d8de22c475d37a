//! The managed Docker plugin, end to end: built without a registry
//! (plugin/build.sh), installed with `docker plugin create/enable`, used by a
//! compose file, driven by the host CLI (socket found through the Docker
//! API), then disabled/enabled, dockerd restarted, SSH_PORT changed and the
//! plugin upgraded in place: volumes, snapshots, schedule and the sshd host
//! key survive every step, and no `local` duplicate appears.
//!
//! Uses the host's /var/lib/buttervolume (the plugin's fixed data path), so
//! everything runs in this single test.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{run, stderr, stdout, BIN};

const NAME: &str = "bvtest/buttervolume:latest";
const DATA: &str = "/var/lib/buttervolume";
const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn sh(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn docker(args: &[&str]) -> String {
    run("docker", args).trim().to_string()
}

/// Our CLI on the host, finding the plugin through the Docker API.
fn cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("BUTTERVOLUME_DRIVERNAME", NAME)
        .env("BUTTERVOLUME_SOCKET", "/nonexistent/btrfs.sock")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn cli_ok(args: &[&str]) -> String {
    let out = cli(args);
    assert!(
        out.status.success(),
        "buttervolume {args:?}: {}",
        stderr(&out)
    );
    stdout(&out)
}

fn wait_until(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}

fn host_key() -> String {
    std::fs::read_to_string(format!("{DATA}/state/sshd/ssh_host_ed25519_key.pub"))
        .unwrap_or_default()
}

fn restart_dockerd() {
    let pid = run("pidof", &["dockerd"]).trim().to_string();
    run("kill", &[&pid]);
    wait_until("dockerd to stop", 60, || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    run(&format!("{REPO}/scripts/start-dockerd.sh"), &[]);
}

fn compose(dir: &Path, project: &str, args: &[&str]) {
    let out = Command::new("docker-compose")
        .env("COMPOSE_HTTP_TIMEOUT", "300")
        .args(["-p", project])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("docker-compose is required");
    assert!(
        out.status.success(),
        "docker-compose {args:?}: {}",
        stderr(&out)
    );
}

fn read_volume(vol: &str) -> String {
    let mount = format!("{vol}:/data");
    docker(&["run", "--rm", "-v", &mount, "bv-busybox", "cat", "/data/f"])
}

/// Everything the plugin must keep: data, snapshot, schedule line, host key.
fn assert_state_kept(vol: &str, snap: &str, key: &str) {
    let ls = docker(&[
        "volume",
        "ls",
        "-f",
        &format!("driver={NAME}"),
        "--format",
        "{{.Name}}",
    ]);
    assert!(ls.lines().any(|l| l == vol), "volume gone: {ls}");
    let local = docker(&[
        "volume",
        "ls",
        "-f",
        "driver=local",
        "--format",
        "{{.Name}}",
    ]);
    assert!(
        !local.lines().any(|l| l == vol),
        "a local duplicate appeared"
    );
    assert_eq!(read_volume(vol), "v1");
    assert!(
        cli_ok(&["snapshots", vol]).lines().any(|l| l == snap),
        "snapshot gone"
    );
    assert!(
        cli_ok(&["scheduled"]).contains(&format!("snapshot 60 {vol}")),
        "schedule gone"
    );
    assert_eq!(host_key(), key, "sshd host key changed");
}

#[test]
fn managed_plugin_lifecycle() {
    let ok = sh("docker", &["image", "inspect", "bv-busybox:latest"])
        .status
        .success();
    assert!(
        ok,
        "dockerd with bv-busybox is required: run scripts/start-dockerd.sh"
    );
    let _ = sh("docker", &["plugin", "rm", "-f", NAME]);
    // Legacy plugins that earlier tests stopped stay registered in dockerd,
    // which then retries their dead sockets (~15 s per volume lookup): start
    // from a fresh dockerd.
    restart_dockerd();

    let out = Command::new(format!("{REPO}/scripts/install-plugin.sh"))
        .arg(NAME)
        .env("BV_BINARY", BIN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install-plugin.sh: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(docker(&["plugin", "inspect", "-f", "{{.Enabled}}", NAME]) == "true");
    wait_until("the plugin's sshd on 1122", 20, || port_open(1122));
    let key = host_key();
    assert!(key.starts_with("ssh-ed25519 "), "{key}");

    // A compose file using the plugin, with driver_opts and the label.
    let dir = tempfile::tempdir().unwrap();
    let project = format!("bvmp{}", std::process::id());
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        format!(
            r#"version: "2.4"
services:
  app:
    image: bv-busybox
    command: ["sh", "-c", "echo v1 > /data/f"]
    volumes: ["data:/data"]
volumes:
  data:
    driver: {NAME}
    driver_opts:
      copyonwrite: "false"
    labels:
      com.github.mlfmonde.cluster.nonmigrable: "True"
"#
        ),
    )
    .unwrap();
    compose(dir.path(), &project, &["up", "--abort-on-container-exit"]);
    let vol = format!("{project}_data");
    assert_eq!(
        std::fs::read_to_string(format!("{DATA}/volumes/{vol}/f")).unwrap(),
        "v1\n",
        "data not on the host's btrfs"
    );
    wait_until("the label to be recorded", 20, || {
        cli_ok(&["inspect", &vol]).contains("NonMigrable: true")
    });

    // The host CLI snapshots and restores through the plugin.
    let snap = cli_ok(&["snapshot", &vol]).trim().to_string();
    assert!(snap.starts_with(&format!("{vol}@")));
    let mount = format!("{vol}:/data");
    docker(&[
        "run",
        "--rm",
        "-v",
        &mount,
        "bv-busybox",
        "sh",
        "-c",
        "echo v2 > /data/f",
    ]);
    assert_eq!(read_volume(&vol), "v2");
    cli_ok(&["restore", &snap]);
    assert_eq!(read_volume(&vol), "v1");
    cli_ok(&["schedule", "snapshot", "60", &vol]);

    // disable/enable.
    docker(&["plugin", "disable", "-f", NAME]);
    docker(&["plugin", "enable", NAME]);
    assert_state_kept(&vol, &snap, &key);

    // dockerd restart: the plugin comes back before volumes are restored.
    restart_dockerd();
    wait_until("the plugin after the restart", 30, || {
        sh("docker", &["plugin", "inspect", "-f", "{{.Enabled}}", NAME])
            .status
            .success()
            && cli(&["snapshots", &vol]).status.success()
    });
    assert_state_kept(&vol, &snap, &key);

    // SSH_PORT is settable and honoured.
    docker(&["plugin", "disable", "-f", NAME]);
    docker(&["plugin", "set", NAME, "SSH_PORT=2222"]);
    docker(&["plugin", "enable", NAME]);
    wait_until("sshd on 2222", 20, || port_open(2222));
    assert!(!port_open(1122), "sshd still on 1122");

    // Upgrade in place keeps everything (and the setting).
    let out = Command::new(format!("{REPO}/scripts/upgrade-plugin.sh"))
        .args(["--force", NAME])
        .env("BV_BINARY", BIN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "upgrade-plugin.sh: {}{}",
        stdout(&out),
        stderr(&out)
    );
    wait_until("sshd on 2222 after the upgrade", 20, || port_open(2222));
    assert_state_kept(&vol, &snap, &key);

    // Clean up.
    cli_ok(&["schedule", "snapshot", "0", &vol]);
    for s in cli_ok(&["snapshots", &vol]).lines() {
        cli_ok(&["rm", s]);
    }
    compose(dir.path(), &project, &["down", "-v"]);
    assert!(!Path::new(&format!("{DATA}/volumes/{vol}")).exists());
    docker(&["plugin", "rm", "-f", NAME]);
}
