//! A hostile peer after the stream of a send: the peer's key runs a script
//! of this test's that receives a full send (and drops it), then either
//! talks for ever on stdout or never exits. Through both transports
//! (`SEND_TRANSPORT=openssh`, the full sends' default, and `libssh2`): the
//! send fails saying why, the daemon does not grow with the reply, the
//! volume's send hold is released, and the next send to an honest peer
//! lands.

use std::path::Path;

use serde_json::{json, Value};
use testkit::nodes::Nodes;
use testkit::{bin, wait_until};

const TRANSPORTS: [&str; 2] = ["openssh", "libssh2"];

/// Installs, as `to`'s forced command for `from`'s key, a script that
/// runs `then` after reading the whole stream of a `buttervolume receive`
/// and passes every other command to our forced command.
fn pair_hostile(n: &Nodes, from: &str, to: &str, dir: &Path, then: &str) {
    let script = dir.join("peer.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             case \"$SSH_ORIGINAL_COMMAND\" in\n\
             'buttervolume receive'*) cat >/dev/null; {then} ;;\n\
             *) exec {bin} ssh-command ;;\n\
             esac\n",
            bin = bin()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    n.pair_with(from, to, script.to_str().unwrap());
}

/// (Re)starts `node`'s daemon with these settings.
fn restart(n: &Nodes, node: &str, env: &[&str]) {
    n.stop(node);
    n.start_with(node, env);
}

/// The most memory the node's daemon has held so far (`VmHWM`), in bytes.
fn high_water(node: &str) -> u64 {
    let pid = std::fs::read_to_string(format!("/run/bvnodes/{node}/daemon.pid")).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib << 10
}

/// Sends `snap` from `node` to `host` on a thread, and waits at most
/// `secs` for the reply's error.
fn send_fails_within(n: &Nodes, node: &str, snap: &str, host: &str, secs: u64) -> String {
    let socket = n.socket(node);
    let body = json!({"Name": snap, "Host": host}).to_string();
    let pending = std::thread::spawn(move || {
        testkit::raw_request_tolerant(&socket, "/VolumeDriver.Snapshot.Send", body.as_bytes())
    });
    wait_until(format!("the send of {snap} to end"), secs, || {
        pending.is_finished()
    });
    let (_, reply) = pending.join().unwrap();
    let reply: Value = serde_json::from_str(&reply).unwrap();
    let err = reply["Err"].as_str().unwrap_or_default().to_string();
    assert!(!err.is_empty(), "the send succeeded: {reply}");
    err
}

/// The volume is free again and the peer honest: the same snapshot lands
/// in full, and only then is a marker recorded.
fn next_send_lands(n: &Nodes, a: &str, b: &str, b_ip: &str, snap: &str) {
    assert_eq!(n.markers(a, b_ip), Vec::<String>::new());
    n.pair(a, b);
    let summary = n.send(a, snap, b_ip);
    assert!(summary.contains("in full"), "{summary}");
    let landed = n.data(b).join("snapshots").join(snap);
    assert_eq!(std::fs::read_to_string(landed.join("f")).unwrap(), "data");
    assert_eq!(n.markers(a, b_ip), vec![format!("{snap}@{b_ip}")]);
    // For the next round: neither the snapshot there nor the marker here.
    buttervolume::btrfs::delete_subvolume(&landed).unwrap();
    let marker = n.data(a).join("snapshots").join(format!("{snap}@{b_ip}"));
    buttervolume::btrfs::delete_subvolume(&marker).unwrap();
}

/// A peer that prints 1 GiB on stdout once it has the stream: the send
/// fails at the 64 MiB limit, and the daemon's memory grows by less than
/// the limit's few multiples (it grew by the whole reply before).
#[test]
fn a_peer_that_talks_for_ever_is_cut_at_the_reply_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (n, a, b, b_ip) = Nodes::sender_and_receiver("tpl", "1G");
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "db"}));
    std::fs::write(n.data(&a).join("volumes/db/f"), "data").unwrap();
    let snap = n.snapshot(&a, "db");
    for transport in TRANSPORTS {
        restart(
            &n,
            &a,
            &[&format!("BUTTERVOLUME_SEND_TRANSPORT={transport}")],
        );
        pair_hostile(&n, &a, &b, dir.path(), "head -c 1073741824 /dev/zero");
        let before = high_water(&a);
        let socket = n.socket(&a);
        let body = json!({"Name": snap, "Host": b_ip}).to_string();
        let (_, reply) =
            testkit::raw_request_tolerant(&socket, "/VolumeDriver.Snapshot.Send", body.as_bytes());
        let grown = high_water(&a).saturating_sub(before);
        assert!(
            grown < 256 << 20,
            "{transport}: the daemon grew by {} MiB ({reply})",
            grown >> 20
        );
        let err = serde_json::from_str::<Value>(&reply).unwrap()["Err"].to_string();
        assert!(
            err.contains("the peer's reply is more than 64 MiB: cut"),
            "{transport}: {reply}"
        );
        next_send_lands(&n, &a, &b, &b_ip, &snap);
    }
}

/// A peer that takes the stream and then never exits (a byte now and then
/// keeps its session busy; keepalives would keep it up anyway): the send
/// fails SSH_TIMEOUT (5 s here) after the stream, and the volume is not
/// held by it any more. (Before, it waited for the peer for ever.)
#[test]
fn a_peer_that_never_exits_is_cut_after_ssh_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (n, a, b, b_ip) = Nodes::sender_and_receiver("tpx", "1G");
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "db"}));
    std::fs::write(n.data(&a).join("volumes/db/f"), "data").unwrap();
    let snap = n.snapshot(&a, "db");
    for transport in TRANSPORTS {
        restart(
            &n,
            &a,
            &[
                "BUTTERVOLUME_SSH_TIMEOUT=5",
                &format!("BUTTERVOLUME_SEND_TRANSPORT={transport}"),
            ],
        );
        // Ends when the session is gone (the write fails).
        pair_hostile(&n, &a, &b, dir.path(), "while printf .; do sleep 1; done");
        let err = send_fails_within(&n, &a, &snap, &b_ip, 60);
        assert!(
            err.contains("did not exit within 5 s (SSH_TIMEOUT) of the end of the stream"),
            "{transport}: {err}"
        );
        next_send_lands(&n, &a, &b, &b_ip, &snap);
    }
}
