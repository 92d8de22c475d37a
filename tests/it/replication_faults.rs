//! Faults in the middle of a 500 MiB transfer: the sender killed, the
//! receiving side killed, the link cut, the receiver's disk full, a stray
//! snapshot of the same name on the receiver. After each: nothing partial is
//! visible on the receiver, the sender's marker is unchanged, and the next
//! send succeeds incrementally from the last good parent.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{json, Value};
use testkit::nodes::Nodes;
use testkit::{entries, wait_until};

const BIG: usize = 500 << 20;

fn fill(path: &Path, bytes: usize, seed: u8) {
    use std::io::Write;
    let block: Vec<u8> = (0..(1 << 20))
        .map(|i: usize| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect();
    let mut f = std::fs::File::create(path).unwrap();
    for i in 0..bytes / block.len() {
        // Vary each block so nothing could be deduplicated.
        let mut b = block.clone();
        b[..8].copy_from_slice(&(i as u64).to_le_bytes());
        f.write_all(&b).unwrap();
    }
    f.sync_all().unwrap();
}

/// A node pair with a baseline already replicated: (nodes, a, b, b_ip,
/// baseline snapshot).
fn setup(tag: &str) -> (Nodes, String, String, String, String) {
    let (n, a, b, b_ip) = Nodes::sender_and_receiver(tag, "3G");
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "db"}));
    std::fs::write(n.data(&a).join("volumes/db/base"), "base").unwrap();
    let base = n.snapshot(&a, "db");
    n.send(&a, &base, &b_ip);
    fill(&n.data(&a).join("volumes/db/big"), BIG, 1);
    (n, a, b, b_ip, base)
}

/// Starts a send in the background; returns the thread with the reply.
fn send_in_background(
    n: &Nodes,
    a: &str,
    snap: &str,
    host: &str,
) -> std::thread::JoinHandle<(u16, String)> {
    let socket = n.socket(a);
    let body = json!({"Name": snap, "Host": host, "Detail": true}).to_string();
    std::thread::spawn(move || {
        testkit::raw_request_tolerant(&socket, "/VolumeDriver.Snapshot.Send", body.as_bytes())
    })
}

/// Waits until the receiver is busy landing a stream with some data in it.
fn wait_for_transfer(n: &Nodes, b: &str) {
    let snapshots = n.data(b).join("snapshots");
    wait_until(format!("a transfer with data in it on {b}"), 30, || {
        entries(&snapshots)
            .into_iter()
            .filter(|e| e.starts_with(".recv."))
            .any(|s| {
                std::fs::metadata(snapshots.join(s).join("big"))
                    .is_ok_and(|meta| meta.len() > 20 << 20)
            })
    });
}

/// The receiver shows only complete snapshots (except `stray`, planted there
/// by the test itself), `failed` is not among them, the sender's marker is
/// the baseline's, and the next send succeeds, incrementally from the
/// baseline.
fn assert_recovers(
    n: &Nodes,
    a: &str,
    b: &str,
    b_ip: &str,
    base: &str,
    failed: &str,
    stray: Option<&str>,
) {
    let visible: Vec<String> = entries(&n.data(b).join("snapshots"))
        .into_iter()
        .filter(|e| !e.starts_with('.'))
        .filter(|e| Some(e.as_str()) != stray)
        .collect();
    for name in &visible {
        let id = buttervolume::btrfs::identity(&n.data(b).join("snapshots").join(name)).unwrap();
        assert!(
            id.read_only && id.received_uuid.is_some(),
            "partial {name} visible"
        );
    }
    assert!(
        !visible.contains(&failed.to_string()),
        "{failed} visible: {visible:?}"
    );
    assert_eq!(n.markers(a, b_ip), vec![format!("{base}@{b_ip}")]);

    std::fs::write(n.data(a).join("volumes/db/after"), "after").unwrap();
    let next = n.snapshot(a, "db");
    let summary = n.send(a, &next, b_ip);
    assert!(summary.contains("incrementally from"), "{summary}");
    let landed = n.data(b).join("snapshots").join(&next);
    assert_eq!(
        std::fs::read_to_string(landed.join("after")).unwrap(),
        "after"
    );
    assert_eq!(
        std::fs::metadata(landed.join("big")).unwrap().len(),
        BIG as u64
    );
    assert_eq!(n.markers(a, b_ip), vec![format!("{next}@{b_ip}")]);
    // No leftover of a dead receive survives the next receive.
    let leftovers: Vec<String> = entries(&n.data(b).join("snapshots"))
        .into_iter()
        .filter(|e| e.starts_with(".recv."))
        .collect();
    for l in leftovers {
        let pid: i32 = l.split('.').nth(2).unwrap().parse().unwrap();
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "stale {l} not swept"
        );
    }
}

#[test]
fn sender_killed_mid_transfer() {
    let (n, a, b, b_ip, base) = setup("fk");
    let snap = n.snapshot(&a, "db");
    let pending = send_in_background(&n, &a, &snap, &b_ip);
    wait_for_transfer(&n, &b);
    n.kill(&a);
    let _ = pending.join();
    n.start(&a);
    // The receiver notices the dead connection and drops the partial copy.
    wait_until("the partial receive to be cleaned up", 60, || {
        !entries(&n.data(&b).join("snapshots"))
            .iter()
            .any(|e| e.starts_with(".recv."))
    });
    assert_recovers(&n, &a, &b, &b_ip, &base, &snap, None);
}

fn same_netns(pid: &str, node: &str) -> bool {
    let ns = std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| m.ino());
    let target = std::fs::metadata(format!("/run/netns/{node}")).map(|m| m.ino());
    matches!((ns, target), (Ok(x), Ok(y)) if x == y)
}

#[test]
fn receiver_killed_mid_transfer() {
    let (n, a, b, b_ip, base) = setup("fr");
    let snap = n.snapshot(&a, "db");
    let pending = send_in_background(&n, &a, &snap, &b_ip);
    wait_for_transfer(&n, &b);
    let out = std::process::Command::new("pgrep")
        .args(["-f", "ssh-command"])
        .output()
        .unwrap();
    let mut killed = 0;
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if same_netns(pid, &b) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.parse().unwrap()),
                nix::sys::signal::Signal::SIGKILL,
            );
            killed += 1;
        }
    }
    assert!(killed > 0, "no receiving process found");
    let (_, reply) = pending.join().unwrap();
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_ne!(reply["Err"], "", "send reported success: {reply}");
    assert_recovers(&n, &a, &b, &b_ip, &base, &snap, None);
}

/// Sends `snap` from `a` to `b`, takes `b`'s link down mid-stream, checks
/// that the send failed after SSH_TIMEOUT (5 s on `a`) saying so, and
/// brings the link back.
fn cut_mid_send(n: &Nodes, a: &str, b: &str, snap: &str, b_ip: &str) {
    let pending = send_in_background(n, a, snap, b_ip);
    wait_for_transfer(n, b);
    n.link(b, "down");
    let (_, reply) = pending.join().unwrap();
    let reply: Value = serde_json::from_str(&reply).unwrap();
    let err = reply["Err"].as_str().unwrap();
    assert!(
        err.contains("stalled for 5 s (SSH_TIMEOUT)"),
        "send error: {err}"
    );
    n.link(b, "up");
}

/// The link goes down mid-stream: the send fails after SSH_TIMEOUT (5 s
/// here) with an error that says so, and nothing partial stays.
#[test]
fn link_cut_mid_transfer() {
    let (n, a, b, b_ip, base) = setup("fl");
    n.stop(&a);
    n.start_with(&a, &["BUTTERVOLUME_SSH_TIMEOUT=5"]);
    let snap = n.snapshot(&a, "db");
    cut_mid_send(&n, &a, &b, &snap, &b_ip);
    assert_recovers(&n, &a, &b, &b_ip, &base, &snap, None);
}

/// A link down for 12 s, shorter than SSH_TIMEOUT (30 s, the default)
/// but longer than the 10 s between libssh2 keepalives, mid-stream of an
/// incremental send: the send rides it out and lands whole. (With libssh2's
/// keepalive on, its blocking wait ended at the next keepalive due and the
/// send failed "stalled for 30 s" about 10 s in.)
#[test]
fn a_link_cut_shorter_than_ssh_timeout_is_ridden_out() {
    let (n, a, b, b_ip, base) = setup("fj");
    let snap = n.snapshot(&a, "db");
    let pending = send_in_background(&n, &a, &snap, &b_ip);
    wait_for_transfer(&n, &b);
    n.link(&b, "down");
    // The fault itself: how long the link stays down.
    std::thread::sleep(std::time::Duration::from_secs(12));
    n.link(&b, "up");
    let (_, reply) = pending.join().unwrap();
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["Err"], "", "{reply}");
    let summary = reply["Summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("incrementally from {base}")),
        "{summary}"
    );
    let landed = n.data(&b).join("snapshots").join(&snap);
    assert_eq!(
        std::fs::metadata(landed.join("big")).unwrap().len(),
        BIG as u64
    );
}

/// The same for a full send, which runs OpenSSH's client: cut after
/// SSH_TIMEOUT too, and the next full send lands whole.
#[test]
fn link_cut_mid_full_send() {
    let (n, a, b, b_ip, _) = setup("fo");
    n.stop(&a);
    n.start_with(&a, &["BUTTERVOLUME_SSH_TIMEOUT=5"]);
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "fresh"}));
    fill(&n.data(&a).join("volumes/fresh/big"), BIG, 2);
    let snap = n.snapshot(&a, "fresh");
    cut_mid_send(&n, &a, &b, &snap, &b_ip);
    assert!(n
        .markers(&a, &b_ip)
        .iter()
        .all(|m| !m.starts_with("fresh@")));
    let summary = n.send(&a, &snap, &b_ip);
    assert!(summary.contains("in full"), "{summary}");
    let landed = n.data(&b).join("snapshots").join(&snap);
    assert_eq!(
        std::fs::metadata(landed.join("big")).unwrap().len(),
        BIG as u64
    );
    let id = buttervolume::btrfs::identity(&landed).unwrap();
    assert!(id.read_only && id.received_uuid.is_some());
}

#[test]
fn receiver_disk_full() {
    let (n, a, b, b_ip, base) = setup("fd");
    // Leave ~150 MiB free on b: the 500 MiB stream cannot fit.
    let filler = n.data(&b).join("filler");
    let stat = nix::sys::statvfs::statvfs(&n.data(&b)).unwrap();
    let free = stat.blocks_available() * stat.fragment_size();
    let file = std::fs::File::create(&filler).unwrap();
    nix::fcntl::fallocate(
        std::os::fd::AsRawFd::as_raw_fd(&file),
        nix::fcntl::FallocateFlags::empty(),
        0,
        (free - (150 << 20)) as i64,
    )
    .unwrap();
    drop(file);
    let snap = n.snapshot(&a, "db");
    // Refused: the disk is full.
    n.send_err(&a, &snap, &b_ip);
    std::fs::remove_file(&filler).unwrap();
    buttervolume::btrfs::sync(&n.data(&b)).unwrap();
    assert_recovers(&n, &a, &b, &b_ip, &base, &snap, None);
}

#[test]
fn stray_snapshot_of_the_same_name_on_the_receiver() {
    let (n, a, b, b_ip, base) = setup("fs");
    let snap = n.snapshot(&a, "db");
    // Something else already sits under that name on b.
    n.ok(&b, "/VolumeDriver.Create", json!({"Name": "other"}));
    std::fs::write(n.data(&b).join("volumes/other/mine"), "b's own").unwrap();
    buttervolume::btrfs::snapshot(
        &n.data(&b).join("volumes/other"),
        &n.data(&b).join("snapshots").join(&snap),
        true,
    )
    .unwrap();
    let err = n.send_err(&a, &snap, &b_ip);
    assert!(err.contains("different snapshot"), "{err}");
    // b's stray is untouched.
    let stray = n.data(&b).join("snapshots").join(&snap);
    assert_eq!(
        std::fs::read_to_string(stray.join("mine")).unwrap(),
        "b's own"
    );
    assert_eq!(n.markers(&a, &b_ip), vec![format!("{base}@{b_ip}")]);
    // The stray is a snapshot of db made on b that a never saw: b's newest
    // state of db (b replicates db with a: its line, paused here, shows
    // a's key b's own snapshots). Any send is refused while it is there
    // (the split-brain rule), with the way out: delete it there.
    n.paused_line(&b, "db", &format!("replicate:{}", n.ip(&a)));
    std::fs::write(n.data(&a).join("volumes/db/later"), "later").unwrap();
    let later = n.snapshot(&a, "db");
    let err = n.send_err(&a, &later, &b_ip);
    assert!(err.contains("the volume there has moved on"), "{err}");
    assert!(err.contains(&snap), "{err}");
    buttervolume::btrfs::delete_subvolume(&stray).unwrap();
    assert_recovers(&n, &a, &b, &b_ip, &base, &snap, None);
}
