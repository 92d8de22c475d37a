//! Follow the container on two nodes, each with its own dockerd, plugin,
//! sshd and btrfs: a container on node a writes and stops; the same app
//! started on node b finds exactly that data; it writes there, stops, and
//! the app goes back to a the same way. With a's link down, b's Mount is
//! refused with the documented error, and pausing the line lets it mount.
//!
//! Faults: kill -9 of the daemon during its last Unmount's push, the link
//! cut during that push, and during a first Mount's pull of the peer's
//! newer state: kill -9 of the pulling daemon, kill -9 of the peer's
//! forced command while it sends, the link cut. After each, the volume is
//! never lost, never half-restored (its files are either what it held or
//! the peer's whole state), never restored from an older state, nothing
//! half-received stays, and the next Mount shows the peer's state.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;

use testkit::nodes::Nodes;
use testkit::{entries, wait_until};

mod faults;

/// A yearly timer: the lines exist (follow needs an active replicate
/// line) but no scheduled round runs during the test.
const YEARLY: &str = "cron:0 0 1 1 *";

/// Two nodes paired both ways, each with its own dockerd, and on each a
/// volume `app` whose replicate line names the other.
struct Pair {
    n: Nodes,
    a: String,
    b: String,
    a_ip: String,
    da: testkit::dockerd::Dockerd,
    db: testkit::dockerd::Dockerd,
}

impl Pair {
    fn up(tag: &str, size: &str) -> Pair {
        let n = Nodes::up(tag, 2, size);
        let (a, b) = (n.name(1), n.name(2));
        n.pair(&a, &b);
        n.pair(&b, &a);
        let (a_ip, b_ip) = (n.ip(&a), n.ip(&b));
        n.docker_start(&a);
        n.docker_start(&b);
        let (da, db) = (n.dockerd(&a), n.dockerd(&b));
        for (docker, peer) in [(&da, &b_ip), (&db, &a_ip)] {
            let line = format!("replicate:{peer}={YEARLY}");
            docker.docker(&["volume", "create", "-d", "btrfs", "-o", &line, "app"]);
        }
        Pair {
            n,
            a,
            b,
            a_ip,
            da,
            db,
        }
    }
}

/// The node daemon's whole log.
fn log(node: &str) -> String {
    std::fs::read_to_string(format!("/run/bvnodes/{node}/daemon.log")).unwrap_or_default()
}

#[test]
fn the_volume_follows_its_container_between_nodes() {
    let Pair {
        n,
        a,
        b,
        a_ip,
        da,
        db,
    } = Pair::up("fw", "2G");

    // On a: the app writes and stops; its last Unmount sends the state.
    let written = da.in_container(
        "app",
        "head -c 4194304 /dev/urandom > /data/one && md5sum /data/one",
    );
    // Again on a: an overwrite in place, still in the page cache when the
    // app stops, is part of the state its last Unmount sends.
    let sum_one = da.in_container(
        "app",
        "dd if=/dev/urandom of=/data/one bs=1M count=1 seek=1 conv=notrunc 2>/dev/null && md5sum /data/one",
    );
    assert_ne!(sum_one, written, "the overwrite changed nothing");
    assert!(
        log(&a).contains("followed: sent app@"),
        "a's last unmount sent nothing:\n{}",
        log(&a)
    );

    // On b: Docker's fresh volume gets a's state before the container runs.
    let on_b = db.in_container("app", "md5sum /data/one && echo two > /data/two");
    assert_eq!(on_b, sum_one, "b's container did not find a's data");
    let log_b = log(&b);
    assert!(
        log_b.contains("followed: restored the peer's newer state"),
        "{log_b}"
    );
    assert!(
        log_b.contains("incrementally from app@"),
        "b's final send was not incremental:\n{log_b}"
    );

    // Back on a: it finds what b wrote. The app only reads: its last
    // Unmount takes no snapshot of the restored state and moves nothing
    // (b has that state already).
    let made_on_a = || {
        let snapshots = n.data(&a).join("snapshots");
        testkit::entries(&snapshots)
            .into_iter()
            .filter(|e| e.starts_with("app@") && e.matches('@').count() == 1)
            .filter(|e| {
                buttervolume::btrfs::identity(&snapshots.join(e))
                    .unwrap()
                    .received_uuid
                    .is_none()
            })
            .count()
    };
    let made_before = made_on_a();
    let back = da.in_container("app", "cat /data/two && md5sum /data/one");
    assert_eq!(back, format!("two\n{sum_one}"));
    assert_eq!(
        made_on_a(),
        made_before,
        "a snapshotted a state it only read"
    );
    let b_ip = n.ip(&b);
    assert!(
        log(&a).contains(&format!("followed: {b_ip} already has app@")),
        "{}",
        log(&a)
    );

    // a unreachable: b refuses the mount, saying how to mount anyway.
    n.link(&a, "down");
    let err = db.docker_err(&["run", "--rm", "-v", "app:/data", "bv-busybox", "true"]);
    assert!(
        err.contains(&format!(
            "to mount anyway, pause the line: buttervolume schedule replicate:{a_ip} pause app"
        )),
        "{err}"
    );
    // status says so, first.
    let out = n.cli(&b, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["Problems"][0]["Kind"], "follow-failed", "{status}");
    let line = format!("replicate:{a_ip}");
    let out = n.cli(&b, &["schedule", &line, "pause", "app"]);
    assert!(out.status.success(), "{}", testkit::stderr(&out));
    let mounted = db.in_container("app", "cat /data/two");
    assert_eq!(mounted, "two", "b mounts its own last state");
    n.link(&a, "up");

    for node in [&a, &b] {
        n.docker_stop(node);
    }
}

/// Both nodes write while cut off (the operator paused b's line to start
/// the app there, on b's own copy): once reconnected, neither node mounts
/// over the other's state (each Mount is refused naming both snapshots),
/// nothing is lost, and the way out works.
#[test]
fn both_nodes_writing_while_cut_off_lose_nothing() {
    let Pair {
        n,
        a,
        b,
        a_ip,
        da,
        db,
    } = Pair::up("sb", "2G");
    let cli_ok = |node: &str, args: &[&str]| {
        let out = n.cli(node, args);
        assert!(out.status.success(), "{args:?}: {}", testkit::stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // The app runs on a (its state reaches b at each stop).
    da.in_container("app", "echo base > /data/f");

    // Cut off: b's operator pauses the line and starts the app on b's copy
    // (Docker's fresh volume there: it never held a's state).
    n.link(&a, "down");
    let b_line = format!("replicate:{a_ip}");
    cli_ok(&b, &["schedule", &b_line, "pause", "app"]);
    db.in_container("app", "echo on-b > /data/f");
    let ours_b = cli_ok(&b, &["snapshot", "app"]);
    cli_ok(&b, &["schedule", &b_line, "resume", "app"]);
    n.link(&a, "up");

    // Reconnected: a refuses to mount b's divergent state, and so does b.
    for (docker, node) in [(&da, &a), (&db, &b)] {
        let err = docker.docker_err(&["run", "--rm", "-v", "app:/data", "bv-busybox", "true"]);
        assert!(err.contains("moved on both here"), "{node}: {err}");
        assert!(err.contains(&ours_b), "{node}: {err}");
    }
    let read = |node: &str| std::fs::read_to_string(n.data(node).join("volumes/app/f")).unwrap();
    assert_eq!(
        (read(&a), read(&b)),
        ("base\n".to_string(), "on-b\n".to_string())
    );

    // The way out chosen here: b takes a's state; b's own stays a snapshot.
    let theirs = cli_ok(&b, &["receive", &a_ip, "app"]);
    cli_ok(&b, &["restore", &theirs, "app"]);
    assert_eq!(db.in_container("app", "cat /data/f"), "base");
    let kept = n.data(&b).join("snapshots").join(&ours_b).join("f");
    assert_eq!(std::fs::read_to_string(kept).unwrap(), "on-b\n");
    // And the pair follows again: a mounts what b left.
    assert_eq!(da.in_container("app", "cat /data/f"), "base");

    for node in [&a, &b] {
        n.docker_stop(node);
    }
}
