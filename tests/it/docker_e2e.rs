//! End to end with a real Docker daemon, the run's private one
//! (`tests/dockerd/dockerd.sh`, started by `scripts/test.sh`), never the
//! host's: the plugin runs in legacy mode (socket in that dockerd's plugin
//! dir, under a driver name unique to this run), Docker creates, mounts,
//! inspects and removes volumes through it, containers read and write real
//! data on btrfs.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;

use serde_json::json;
use testkit::dockerd::Dockerd;
use testkit::{run_tag, wait_until, Daemon};

/// A test daemon serving the private dockerd as a legacy plugin; when the
/// test ends its socket is left answering (see [`testkit::dockerd::tombstone`]).
struct Legacy {
    daemon: Daemon,
}

impl Deref for Legacy {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.daemon
    }
}

impl DerefMut for Legacy {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.daemon
    }
}

impl Drop for Legacy {
    fn drop(&mut self) {
        self.daemon.stop();
        testkit::dockerd::tombstone(&self.daemon.socket);
    }
}

/// A daemon serving the private dockerd as legacy plugin `<base><run tag>`;
/// returns it with the dockerd and the driver name.
fn legacy_daemon(test: &str, base: &str) -> (Legacy, Dockerd, String) {
    let dockerd = Dockerd::get();
    let driver = format!("{base}{}", run_tag());
    let socket: PathBuf = dockerd.plugins_dir().join(format!("{driver}.sock"));
    let api = dockerd.socket().display().to_string();
    let daemon = Daemon::builder(test)
        .socket(socket)
        .env("BUTTERVOLUME_DOCKER_SOCKET", &api)
        .start();
    (Legacy { daemon }, dockerd, driver)
}

#[test]
fn docker_volume_lifecycle_with_containers() {
    let (d, dk, driver) = legacy_daemon("docker", "btrfs");
    let docker = |args: &[&str]| dk.docker(args);
    let vol = format!("e2e{}", run_tag());
    docker(&[
        "volume",
        "create",
        "-d",
        &driver,
        "-o",
        "copyonwrite=false",
        &vol,
    ]);
    let subvolume = d.volumes().join(&vol);
    assert!(buttervolume::btrfs::is_subvolume(&subvolume));

    let mount = format!("{vol}:/data");
    dk.in_container(&vol, "echo hello > /data/f");
    let read = dk.in_container(&vol, "cat /data/f");
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
        &format!("driver={driver}"),
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
    dk.in_container(&vol, "echo changed > /data/f");
    let restore = d.cli(&["restore", String::from_utf8_lossy(&snap.stdout).trim()]);
    assert!(restore.status.success(), "{}", testkit::stderr(&restore));
    let read = dk.in_container(&vol, "cat /data/f");
    assert_eq!(read, "hello");

    // A running container pins the volume: restore refused, remove refused.
    let cid = docker(&["run", "-d", "-v", &mount, "bv-busybox", "sleep", "60"]);
    let restore = d.cli(&["restore", &vol]);
    assert_eq!(restore.status.code(), Some(1));
    assert!(
        testkit::stderr(&restore).contains("mounted"),
        "{}",
        testkit::stderr(&restore)
    );
    let (_, reply) = d.post("/VolumeDriver.Remove", &json!({"Name": vol}));
    assert!(reply["Err"].as_str().unwrap().contains("in use"), "{reply}");
    docker(&["rm", "-f", &cid]);

    docker(&["volume", "rm", &vol]);
    assert!(!subvolume.exists());
    assert!(!dk
        .docker_output(&["volume", "inspect", &vol])
        .status
        .success());
}

#[test]
fn labels_reach_the_volume_metadata_and_survive_restore() {
    let (d, dk, driver) = legacy_daemon("labels", "bvlabels");
    let docker = |args: &[&str]| dk.docker(args);
    let vol = format!("lbl{}", run_tag());
    docker(&[
        "volume",
        "create",
        "-d",
        &driver,
        "--label",
        "com.github.mlfmonde.cluster.nonmigrable=True",
        "--label",
        "team=db",
        &vol,
    ]);
    wait_until("labels to be recorded", 15, || {
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
    assert!(testkit::stdout(&out).contains("NonMigrable: true"));
    docker(&["volume", "rm", &vol]);
}

#[test]
fn compose_file_with_driver_opts_and_labels() {
    let (d, dk, driver) = legacy_daemon("compose", "bvcompose");
    let dir = tempfile::tempdir().unwrap();
    let project = format!("bvc{}", run_tag());
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
    driver: DRIVER
    driver_opts:
      copyonwrite: "false"
      compression: ""
      snapshot: "60"
    labels:
      com.github.mlfmonde.cluster.nonmigrable: "True"
"#
        .replace("DRIVER", &driver),
    )
    .unwrap();
    let compose = |args: &[&str]| {
        let out = std::process::Command::new("docker-compose")
            .env("COMPOSE_HTTP_TIMEOUT", "300")
            .env("DOCKER_HOST", dk.docker_host())
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
    let csv = std::fs::read_to_string(d.root.join("config/schedule.csv")).unwrap();
    assert_eq!(csv, format!("{vol},snapshot,60,True\r\n"));
    wait_until("compose labels", 15, || {
        d.ok("/VolumeDriver.Get", json!({"Name": vol}))["Volume"]["Status"]["NonMigrable"] == true
    });
    compose(&["down", "-v"]);
    assert!(!path.exists(), "compose down -v did not remove the volume");
}

/// `buttervolume doctor` where Docker's `local` volumes are, i.e. inside the
/// private dockerd's mount namespace (its /var/lib/docker, its API socket at
/// /run/docker.sock, its plugin dir at /run/docker/plugins).
fn doctor(d: &Legacy, dk: &Dockerd, args: &[&str]) -> std::process::Output {
    let outside_run = dk.dir.join("run").display().to_string();
    let mut command = vec!["env".to_string()];
    for (key, value) in &d.env {
        let value = match key.as_str() {
            "BUTTERVOLUME_DOCKER_SOCKET" => "/run/docker.sock".to_string(),
            _ => value.replacen(&outside_run, "/run", 1),
        };
        command.push(format!("{key}={value}"));
    }
    command.extend(["RUST_LOG=warn".to_string(), testkit::bin().to_string()]);
    command.push("doctor".into());
    command.extend(args.iter().map(|a| a.to_string()));
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    dk.exec(&command)
}

#[test]
fn doctor_finds_and_fixes_local_duplicates_and_stale_sockets() {
    let (mut d, dk, driver) = legacy_daemon("doctor", "bvdoc");
    let docker = |args: &[&str]| dk.docker(args);
    let pid = run_tag();
    let (dup, clash) = (format!("dup{pid}"), format!("clash{pid}"));
    // What a reboot with the plugin not yet up produces: a `local` volume
    // with the app's data, beside the (empty) btrfs one.
    for name in [&dup, &clash] {
        docker(&["volume", "create", name]);
        dk.in_container(name, "echo local > /data/f");
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
    // A legacy daemon's socket left behind (issue 21: dockerd keeps
    // retrying that driver until the file is gone and dockerd restarted).
    let legacy = runpath.join("plugins/btrfs.sock");
    drop(std::os::unix::net::UnixListener::bind(&legacy).unwrap());
    d.env
        .push(("BUTTERVOLUME_RUNPATH".into(), runpath.display().to_string()));

    let out = doctor(&d, &dk, &[]);
    let text = testkit::stdout(&out);
    assert!(out.status.success(), "{}", testkit::stderr(&out));
    assert!(
        text.contains(&format!("volume {dup} exists both as a `local`")),
        "{text}"
    );
    assert!(text.contains("would copy the local data"), "{text}");
    assert!(text.contains("stale plugin socket"), "{text}");
    assert!(
        text.contains(&format!(
            "legacy plugin socket {} is dead",
            legacy.display()
        )) && text.contains("restart dockerd"),
        "{text}"
    );
    assert!(
        runpath.join("plugins/old.sock").exists() && legacy.exists(),
        "doctor without --fix changed things"
    );

    let out = doctor(&d, &dk, &["--fix"]);
    let text = testkit::stdout(&out);
    assert!(out.status.success(), "{}", testkit::stderr(&out));
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
    assert!(!legacy.exists(), "the dead legacy socket was kept: {text}");
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
        &format!("driver={driver}"),
        "--format",
        "{{.Driver}} {{.Name}}",
    ]);
    assert!(ls.contains(&format!("{driver} {dup}")), "{ls}");

    // Clean up: Docker's local record, then our volumes.
    docker(&["volume", "rm", &clash]);
    for name in [&clash, &dup] {
        d.ok("/VolumeDriver.Remove", json!({"Name": name}));
    }
    d.stop();
}

/// `docker volume create -o <action>=<timer>` writes the volume's schedule
/// lines (only if absent); refused while the schedule is paused, and
/// unknown options are still refused; nothing is created on a refusal.
#[test]
fn volume_options_schedule_the_volumes_jobs() {
    let (d, dk, driver) = legacy_daemon("volopts", "bvopts");
    let vol = format!("opt{}", run_tag());
    dk.docker(&[
        "volume",
        "create",
        "-d",
        &driver,
        "-o",
        "snapshot=30",
        "-o",
        "replicate:127.0.0.2=cron:0 3 * * *",
        "-o",
        "purge:1h:1d=1440",
        "-o",
        "copyonwrite=false",
        &vol,
    ]);
    let csv = d.root.join("config/schedule.csv");
    let lines = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        lines(&csv),
        format!(
            "{vol},purge:1h:1d,1440,True\r\n{vol},replicate:127.0.0.2,cron:0 3 * * *,True\r\n{vol},snapshot,30,True\r\n"
        )
    );
    let info = d.ok("/VolumeDriver.Get", json!({"Name": vol}));
    assert_eq!(
        info["Volume"]["Status"]["Options"],
        json!({"copyonwrite": "false"})
    );
    // Created again (Docker's Create is idempotent): an edited line stays.
    let out = d.cli(&["schedule", "snapshot", "45", &vol]);
    assert!(out.status.success(), "{}", testkit::stderr(&out));
    d.ok(
        "/VolumeDriver.Create",
        json!({"Name": vol, "Opts": {"snapshot": "5"}}),
    );
    assert!(lines(&csv).contains(&format!("{vol},snapshot,45,True")));

    // Bad options: refused, nothing created.
    for (opt, expected) in [
        ("snapshot=0", "unschedule with"),
        (
            "replicate:[fd00::2]=60",
            "Unknown option 'replicate:[fd00::2]'",
        ),
        ("color=blue", "Unknown option 'color'"),
    ] {
        let bad = format!("bad{}", run_tag());
        let err = dk.docker_err(&["volume", "create", "-d", &driver, "-o", opt, &bad]);
        assert!(err.contains(expected), "{opt}: {err}");
        assert!(!d.volumes().join(&bad).exists(), "{opt} created {bad}");
    }
    // Paused: job options are refused, plain creates still work.
    let out = d.cli(&["scheduled", "pause"]);
    assert!(out.status.success(), "{}", testkit::stderr(&out));
    let paused = format!("paused{}", run_tag());
    let err = dk.docker_err(&[
        "volume",
        "create",
        "-d",
        &driver,
        "-o",
        "snapshot=30",
        &paused,
    ]);
    assert!(err.contains("globally paused"), "{err}");
    assert!(!d.volumes().join(&paused).exists());
    dk.docker(&["volume", "create", "-d", &driver, &paused]);
    assert!(d.volumes().join(&paused).exists());
    for v in [&vol, &paused] {
        dk.docker(&["volume", "rm", v]);
    }
}
