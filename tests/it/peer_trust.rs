//! What a paired key and a container may change or read here: the forced
//! command run as sshd runs it, with a key scoped by `--peer`; a hostile
//! peer (a script as its forced command) forging its listing at a follow
//! Mount; a container's user writing extended attributes on its volume.

use std::process::{Command, Stdio};

use serde_json::json;
use testkit::{bin, output_with_stdin, Daemon};

/// The peer this node replicates `shared` with (a paused line: nothing is
/// ever sent to it).
const PEER: &str = "127.0.0.2";

/// Runs the forced command of a key installed with `peer` (`None`: an
/// unscoped key of an older release), `request` as the peer's command and
/// `stdin` as its input: (success, stdout, stderr).
fn ssh(d: &Daemon, peer: Option<&str>, request: &str, stdin: &[u8]) -> (bool, Vec<u8>, String) {
    let mut command = Command::new(bin());
    command.arg("ssh-command");
    if let Some(peer) = peer {
        command.args(["--peer", peer]);
    }
    command
        .envs(d.env.iter().cloned())
        .env("SSH_ORIGINAL_COMMAND", request)
        .env("RUST_LOG", "warn");
    let out = output_with_stdin(&mut command, stdin);
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn names(listing: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(listing)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn snapshot(d: &Daemon, volume: &str) -> String {
    d.ok("/VolumeDriver.Snapshot", json!({"Name": volume}))["Snapshot"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_scoped_key_reads_only_what_is_replicated_with_its_peer_or_what_it_sent() {
    let d = Daemon::start("peer_scope");
    for v in ["shared", "solo", "pushed"] {
        d.ok("/VolumeDriver.Create", json!({"Name": v}));
    }
    let shared = snapshot(&d, "shared");
    let solo = snapshot(&d, "solo");
    // Only `shared` is replicated with PEER (paused: never run).
    let schedule = d.env_value("BUTTERVOLUME_SCHEDULE").unwrap().to_string();
    std::fs::create_dir_all(std::path::Path::new(&schedule).parent().unwrap()).unwrap();
    std::fs::write(
        &schedule,
        format!("shared,replicate:root@{PEER},60,False\r\n"),
    )
    .unwrap();

    let (ok, out, err) = ssh(&d, Some(PEER), "buttervolume list-newest", b"");
    assert!(ok, "{err}");
    assert_eq!(names(&out), vec![shared.clone()]);
    let (ok, out, _) = ssh(&d, Some(PEER), "buttervolume list solo", b"");
    assert!(ok && names(&out).is_empty(), "{:?}", names(&out));
    let (ok, out, err) = ssh(&d, Some(PEER), &format!("buttervolume send {solo}"), b"");
    assert!(!ok && out.is_empty(), "a pull of another volume must fail");
    assert!(err.contains("is not replicated with 127.0.0.2"), "{err}");
    let (ok, out, err) = ssh(&d, Some(PEER), &format!("buttervolume send {shared}"), b"");
    assert!(ok, "{err}");
    assert!(out.starts_with(b"btrfs-stream\0"), "a send stream");
    // Nor through the reference's rsync read side.
    let volumes = d
        .env_value("BUTTERVOLUME_VOLUMES_PATH")
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let rsync = format!("rsync --server --sender -logDtpre.iLsfxC . {volumes}/solo/");
    let (ok, _, err) = ssh(&d, Some(PEER), &rsync, b"");
    assert!(!ok && err.contains("is not replicated with"), "{err}");

    // The peer pushes a snapshot of `pushed`: it sees that one, not the
    // volume's other snapshots, and another peer sees none of them.
    let own = snapshot(&d, "pushed");
    let pushed = snapshot(&d, "pushed");
    let stream = Command::new("btrfs")
        .args(["send", "-q"])
        .arg(d.snapshots().join(&pushed))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(stream.status.success());
    buttervolume::btrfs::delete_subvolume(&d.snapshots().join(&pushed)).unwrap();
    let (ok, _, err) = ssh(&d, Some(PEER), "buttervolume receive", &stream.stdout);
    assert!(ok, "{err}");
    let (_, out, _) = ssh(&d, Some(PEER), "buttervolume list pushed", b"");
    assert_eq!(names(&out), vec![pushed.clone()]);
    let (_, out, _) = ssh(&d, Some("127.0.0.3"), "buttervolume list-newest", b"");
    assert!(names(&out).is_empty(), "{:?}", names(&out));
    let (ok, _, err) = ssh(&d, Some(PEER), &format!("buttervolume send {own}"), b"");
    assert!(!ok && err.contains("is not replicated with"), "{err}");
    let (ok, _, err) = ssh(
        &d,
        Some("127.0.0.3"),
        &format!("buttervolume delete {pushed}"),
        b"",
    );
    assert!(
        !ok && err.contains("is not replicated with 127.0.0.3"),
        "{err}"
    );
    assert!(d.snapshots().join(&pushed).exists());
    let (ok, _, err) = ssh(
        &d,
        Some(PEER),
        &format!("buttervolume delete {pushed}"),
        b"",
    );
    assert!(ok, "{err}");
    assert!(!d.snapshots().join(&pushed).exists());

    // A key of an older release (no --peer) still sees everything, and
    // status says so.
    let (ok, out, err) = ssh(&d, None, "buttervolume list-newest", b"");
    assert!(ok, "{err}");
    let listed = names(&out);
    assert!(
        listed.contains(&solo) && listed.contains(&shared),
        "{listed:?}"
    );
}

#[test]
fn a_peer_cannot_delete_a_sent_marker() {
    let d = Daemon::start("peer_marker");
    d.ok("/VolumeDriver.Create", json!({"Name": "db"}));
    let snap = snapshot(&d, "db");
    // The marker of a received snapshot is read-only with a received UUID,
    // as the snapshot itself: made here the way a pull makes it.
    let stream = Command::new("btrfs")
        .args(["send", "-q"])
        .arg(d.snapshots().join(&snap))
        .output()
        .unwrap();
    buttervolume::btrfs::delete_subvolume(&d.snapshots().join(&snap)).unwrap();
    let (ok, _, err) = ssh(&d, None, "buttervolume receive", &stream.stdout);
    assert!(ok, "{err}");
    let marker = format!("{snap}@{PEER}");
    buttervolume::btrfs::snapshot(
        &d.snapshots().join(&snap),
        &d.snapshots().join(&marker),
        true,
    )
    .unwrap();
    for request in [
        format!("buttervolume delete {marker}"),
        format!(
            "btrfs subvolume delete {}{marker}",
            d.env_value("BUTTERVOLUME_SNAPSHOTS_PATH").unwrap()
        ),
    ] {
        let (ok, _, err) = ssh(&d, None, &request, b"");
        assert!(!ok && err.contains("is a sent marker"), "{request}: {err}");
        assert!(d.snapshots().join(&marker).exists());
    }
}

/// Runs `setfattr` as the unprivileged user 1000 (a container's app user
/// owning its volume's root).
fn setfattr_as_app_user(name: &str, value: &str, path: &std::path::Path) -> bool {
    Command::new("setpriv")
        .args([
            "--reuid",
            "1000",
            "--regid",
            "1000",
            "--clear-groups",
            "setfattr",
            "-n",
            name,
            "-v",
            value,
        ])
        .arg(path)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn nonmigrable(d: &Daemon, volume: &str) -> bool {
    d.ok("/VolumeDriver.Get", json!({"Name": volume}))["Volume"]["Status"]["NonMigrable"]
        .as_bool()
        .unwrap()
}

#[test]
fn a_container_user_cannot_rewrite_its_volumes_metadata() {
    let d = Daemon::start("xattr_owner");
    d.ok(
        "/VolumeDriver.Create",
        json!({"Name": "app", "Opts": {"nonmigrable": "true"}}),
    );
    let root = d.volumes().join("app");
    std::os::unix::fs::chown(&root, Some(1000), Some(1000)).unwrap();
    assert!(nonmigrable(&d, "app"));
    // What the old releases read: writable by the directory's owner.
    assert!(setfattr_as_app_user(
        "user.buttervolume",
        r#"{"nonmigrable":false,"options":{"follow":"false"}}"#,
        &root
    ));
    assert!(
        !setfattr_as_app_user("trusted.buttervolume", "{}", &root),
        "trusted. needs CAP_SYS_ADMIN"
    );
    assert!(nonmigrable(&d, "app"), "the app user unset nonmigrable");
    // A snapshot taken now keeps the real metadata too.
    let snap = snapshot(&d, "app");
    let restored = "app-copy";
    d.ok(
        "/VolumeDriver.Snapshot.Restore",
        json!({"Name": snap, "Target": restored}),
    );
    assert!(nonmigrable(&d, restored));
}

#[test]
fn metadata_of_older_releases_moves_to_trusted_at_start() {
    let mut d = Daemon::start("xattr_migrate");
    d.stop();
    let old = d.volumes().join("old");
    buttervolume::btrfs::create_subvolume(&old).unwrap();
    buttervolume::btrfs::set_xattr(&old, "user.buttervolume", br#"{"nonmigrable":true}"#).unwrap();
    d.spawn();
    assert!(nonmigrable(&d, "old"), "the flag survives the move");
    assert_eq!(
        buttervolume::btrfs::get_xattr(&old, "user.buttervolume").unwrap(),
        None
    );
    assert!(buttervolume::btrfs::get_xattr(&old, "trusted.buttervolume")
        .unwrap()
        .is_some());
}

/// A paired peer whose forced command is a script of the test's: it lists
/// a forged line for `db` claiming that its newest state is this node's own
/// old snapshot `s1`, built on the volume's newer, unsent state `s2`.
#[test]
fn a_follow_mount_never_restores_a_local_snapshot_on_a_peers_claim() {
    use testkit::nodes::Nodes;
    let n = Nodes::up("ht", 2, "1G");
    let (a, b) = (n.name(1), n.name(2));
    let b_ip = n.ip(&b);
    let line = format!("replicate:{b_ip}");
    n.ok(
        &a,
        "/VolumeDriver.Create",
        json!({"Name": "db", "Opts": {line: "cron:0 0 1 1 *"}}),
    );
    let vol = n.data(&a).join("volumes/db");
    std::fs::write(vol.join("one"), "1").unwrap();
    let s1 = n.snapshot(&a, "db");
    std::fs::write(vol.join("two"), "2").unwrap();
    let s2 = n.snapshot(&a, "db");
    let id =
        |s: &str| buttervolume::btrfs::identity(&n.data(&a).join("snapshots").join(s)).unwrap();
    let forged = json!({
        "name": "db@2099-01-01T00:00:00.000000",
        "uuid": "0b7c8a34-5a2e-7b4b-9c55-0123456789ab",
        "received_uuid": id(&s1).uuid,
        "read_only": true,
        "created": [9, 999],
        "lineage": [id(&s2).uuid],
    });
    let script = n.data(&b).join("hostile.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$SSH_ORIGINAL_COMMAND\" in\n  'buttervolume list db'|'buttervolume list-newest') echo '{forged}' ;;\n  *) exit 1 ;;\nesac\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    n.pair_with(&a, &b, "/var/lib/buttervolume/hostile.sh");

    let reply = n.post(
        &a,
        "/VolumeDriver.Mount",
        &json!({"Name": "db", "ID": "c1"}),
    );
    let err = reply["Err"].as_str().unwrap();
    assert!(err.contains("contradicts what is here"), "{reply}");
    assert!(
        err.contains(&format!("buttervolume restore {s1} db")),
        "{err}"
    );
    // Nothing was restored: the unsent state is still the volume's.
    assert_eq!(std::fs::read_to_string(vol.join("two")).unwrap(), "2");
}
