//! Faults during a follow's push and pull: kill -9 of either end, the
//! link cut, two pulls at once; nothing lost, nothing half-restored.

use super::*;

/// kill -9 of the daemon in the middle of its last Unmount's push: nothing
/// half-sent is visible on the peer, the state the app stopped with stays
/// here as a snapshot, and the app's next start on the peer gets exactly
/// that state (never an older one).
#[test]
fn a_push_killed_half_way_loses_nothing() {
    let Pair {
        n,
        a,
        b,
        a_ip: _,
        da,
        db,
    } = Pair::up("kp", "3G");
    da.in_container("app", "echo v1 > /data/small");

    // The app writes a lot and stops; a's daemon dies while pushing it.
    let before = log(&a).len();
    let stopping = {
        let da = n.dockerd(&a);
        std::thread::spawn(move || {
            da.docker_output(&[
                "run", "--rm", "-v", "app:/data", "bv-busybox", "sh", "-c",
                "head -c 629145600 /dev/urandom > /data/big && echo v2 > /data/small && md5sum /data/big",
            ])
        })
    };
    testkit::wait_until("a's final push to be streaming", 120, || {
        log(&a)[before..].contains("buttervolume::replication::send: sending")
    });
    n.kill(&a);
    let received = n.data(&b).join("snapshots");
    let visible = |dir: &std::path::Path| testkit::entries(dir);
    // Nothing half-received under a real name on b.
    for name in visible(&received) {
        let path = received.join(&name);
        let id = buttervolume::btrfs::identity(&path).unwrap();
        assert!(
            id.read_only && id.received_uuid.is_some() || !name.starts_with("app@"),
            "{name}"
        );
    }
    n.start(&a);
    let out = stopping.join().unwrap();
    let sum = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        sum.ends_with("/data/big"),
        "the app did not finish: {out:?}"
    );

    // The app starts on b: it gets the state it stopped with on a.
    let on_b = db.in_container("app", "cat /data/small && md5sum /data/big");
    assert_eq!(on_b, format!("v2\n{sum}"));
    for node in [&a, &b] {
        n.docker_stop(node);
    }
}

/// Big enough that a fault lands while the stream is in flight.
const BIG: u64 = 600 << 20;

/// `bytes` of pseudo-random data (nothing repeats: no block is shared).
fn fill(path: &Path, bytes: u64, seed: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x = seed | 1;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..bytes / block.len() as u64 {
        for chunk in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();
}

/// What a volume holds: each regular file (by path) and a hash of its
/// content. Two digests are equal only when every file is.
fn digest(dir: &Path) -> BTreeMap<String, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        for name in entries(dir) {
            let path = dir.join(&name);
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if meta.is_dir() {
                walk(root, &path, out);
            } else if meta.is_file() {
                use std::io::Read;
                let mut h = std::collections::hash_map::DefaultHasher::new();
                let mut f = std::fs::File::open(&path).unwrap();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    h.write(&buf[..n]);
                }
                out.insert(rel, h.finish());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// md5sum of a file as `md5sum` prints it (the hash alone).
fn md5(path: &Path) -> String {
    let out = testkit::run("md5sum", &[path.to_str().unwrap()]);
    out.split_whitespace().next().unwrap().to_string()
}

/// The state `a` holds and `b` does not: the app ran on a (its stop
/// sent v1 to b), then a moved on to `small` = v2 plus BIG bytes in
/// `big`, snapshotted there and not sent (as when a's final send did not
/// get through). b's volume is the empty one Docker created. Returns (b's
/// volume before, a's state, md5 of big).
fn a_holds_a_state_b_lacks(p: &Pair) -> (BTreeMap<String, u64>, BTreeMap<String, u64>, String) {
    let n = &p.n;
    p.da.in_container("app", "echo v1 > /data/small");
    let vol_a = n.data(&p.a).join("volumes/app");
    fill(&vol_a.join("big"), BIG, 7);
    std::fs::write(vol_a.join("small"), "v2\n").unwrap();
    n.snapshot(&p.a, "app");
    let before = digest(&n.data(&p.b).join("volumes/app"));
    assert!(
        before.is_empty(),
        "b's volume is not Docker's fresh one: {before:?}"
    );
    (before, digest(&vol_a), md5(&vol_a.join("big")))
}

/// The app's start on b, in the background: `docker run` printing
/// `small` and big's md5.
fn start_on_b(p: &Pair) -> std::thread::JoinHandle<Output> {
    let db = p.n.dockerd(&p.b);
    std::thread::spawn(move || {
        db.docker_output(&[
            "run",
            "--rm",
            "-v",
            "app:/data",
            "bv-busybox",
            "sh",
            "-c",
            "cat /data/small && md5sum /data/big",
        ])
    })
}

/// Waits until `node` is landing a stream (hidden `.recv.*` subvolume)
/// that already holds more than 20 MiB of `big`: a fault now lands
/// mid-stream. Returns the staging entry's name.
fn wait_mid_stream(n: &Nodes, node: &str) -> String {
    let mut found = String::new();
    wait_until(
        format!("a stream with data in it landing on {node}"),
        120,
        || {
            let snapshots = n.data(node).join("snapshots");
            let staged = entries(&snapshots).into_iter().find(|e| {
                e.starts_with(".recv.")
                    && std::fs::metadata(snapshots.join(e).join("big"))
                        .is_ok_and(|m| m.len() > 20 << 20 && m.len() < BIG)
            });
            staged.map(|s| found = s).is_some()
        },
    );
    found
}

/// The volume on b holds either what it held or a's whole state, never a
/// mix and never a's older v1; nothing half-received is visible on b.
fn assert_whole(p: &Pair, before: &BTreeMap<String, u64>, full: &BTreeMap<String, u64>) {
    let now = digest(&p.n.data(&p.b).join("volumes/app"));
    assert!(
        now == *before || now == *full,
        "b's volume is neither what it held nor a's state: {now:?}"
    );
    let snapshots = p.n.data(&p.b).join("snapshots");
    for name in entries(&snapshots) {
        if name.starts_with("app@") {
            let id = buttervolume::btrfs::identity(&snapshots.join(&name)).unwrap();
            assert!(id.read_only, "{name} is a writable snapshot");
        }
    }
}

/// The start that the fault hit either failed, saying why when `why` is
/// given, or got all of a's state.
fn assert_failed_or_whole(out: &Output, md5: &str, why: Option<&str>) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        assert_eq!(stdout.trim(), format!("v2\n{md5}  /data/big"), "{stderr}");
    } else if let Some(why) = why {
        assert!(stderr.contains(why), "not a clear error: {stderr}");
    } else {
        assert!(
            stderr.contains("Error"),
            "the start failed silently: {stderr}"
        );
    }
}

/// The next start on b gets a's whole state; no half-received leftover
/// stays on b.
fn assert_next_start_recovers(p: &Pair, full: &BTreeMap<String, u64>, md5: &str) {
    let out = start_on_b(p).join().unwrap();
    let now = digest(&p.n.data(&p.b).join("volumes/app"));
    assert!(
        out.status.success(),
        "the next start on b failed ({}): stdout {:?}, stderr {:?}; b's volume {} a's state; b's dockerd log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        if now == *full { "holds" } else { "does not hold" },
        p.db.log_tail(40),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("v2\n{md5}  /data/big")
    );
    assert_eq!(now, *full);
    let snapshots = p.n.data(&p.b).join("snapshots");
    wait_until(
        "the half-received leftovers on b to be deleted",
        120,
        || !entries(&snapshots).iter().any(|e| e.starts_with(".recv.")),
    );
}

fn same_netns(pid: &str, node: &str) -> bool {
    let ns = std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| m.ino());
    let target = std::fs::metadata(format!("/run/netns/{node}")).map(|m| m.ino());
    matches!((ns, target), (Ok(x), Ok(y)) if x == y)
}

/// SIGKILLs every forced command (`ssh-command`) running in `node`;
/// returns how many.
fn kill_forced_commands(node: &str) -> usize {
    let out = std::process::Command::new("pgrep")
        .args(["-f", "ssh-command"])
        .output()
        .unwrap();
    let mut killed = 0;
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if same_netns(pid, node) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.parse().unwrap()),
                nix::sys::signal::Signal::SIGKILL,
            );
            killed += 1;
        }
    }
    killed
}

/// kill -9 of the daemon pulling at its first Mount, mid-stream: the
/// volume keeps what it held, the restarted daemon deletes the half
/// received copy, and the next start gets a's whole state. (Docker 20.10
/// retries a plugin call whose connection broke, with an empty body: the
/// restarted daemon refuses that one, `missing field Name`, and the start
/// fails; a retry that carried its body would pull again.)
#[test]
fn a_pull_killed_half_way_on_the_pulling_node() {
    let p = Pair::up("kl", "3G");
    let (before, full, md5) = a_holds_a_state_b_lacks(&p);
    let starting = start_on_b(&p);
    let staged = wait_mid_stream(&p.n, &p.b);
    p.n.kill(&p.b);
    p.n.start(&p.b);
    let out = starting.join().unwrap();
    assert_failed_or_whole(&out, &md5, None);
    // The restarted daemon swept the dead pull's copy.
    let snapshots = p.n.data(&p.b).join("snapshots");
    wait_until("the dead pull's copy to be deleted", 60, || {
        !snapshots.join(&staged).exists()
    });
    assert_whole(&p, &before, &full);
    assert_next_start_recovers(&p, &full, &md5);
    for node in [&p.a, &p.b] {
        p.n.docker_stop(node);
    }
}

/// kill -9 of the peer's forced command while it sends the state b's
/// first Mount pulls: the Mount fails saying so, b's volume keeps what it
/// held, and the next start gets a's whole state.
#[test]
fn a_pull_killed_half_way_on_the_sending_peer() {
    let p = Pair::up("ks", "3G");
    let (before, full, md5) = a_holds_a_state_b_lacks(&p);
    let starting = start_on_b(&p);
    wait_mid_stream(&p.n, &p.b);
    assert!(kill_forced_commands(&p.a) > 0, "no sending process on a");
    let out = starting.join().unwrap();
    let why = format!("bringing app's newer state from {}", p.a_ip);
    assert!(!out.status.success(), "the start succeeded on a cut stream");
    assert_failed_or_whole(&out, &md5, Some(&why));
    assert_whole(&p, &before, &full);
    assert_next_start_recovers(&p, &full, &md5);
    for node in [&p.a, &p.b] {
        p.n.docker_stop(node);
    }
}

/// The link cut while b's first Mount pulls: the Mount fails saying so,
/// b's volume keeps what it held, and once the link is back the next
/// start gets a's whole state.
#[test]
fn a_pull_cut_by_the_link() {
    let p = Pair::up("cl", "3G");
    let (before, full, md5) = a_holds_a_state_b_lacks(&p);
    let starting = start_on_b(&p);
    wait_mid_stream(&p.n, &p.b);
    p.n.link(&p.a, "down");
    let out = starting.join().unwrap();
    let why = format!("bringing app's newer state from {}", p.a_ip);
    assert!(!out.status.success(), "the start succeeded on a cut link");
    assert_failed_or_whole(&out, &md5, Some(&why));
    assert_whole(&p, &before, &full);
    p.n.link(&p.a, "up");
    assert_next_start_recovers(&p, &full, &md5);
    for node in [&p.a, &p.b] {
        p.n.docker_stop(node);
    }
}

/// The link cut during the last Unmount's push: the state the app stopped
/// with stays on a as a snapshot, nothing half-received is visible on b,
/// and once the link is back b's first Mount pulls exactly that state.
#[test]
fn a_push_cut_by_the_link_is_pulled_at_the_next_start() {
    let p = Pair::up("cp", "3G");
    p.da.in_container("app", "echo v1 > /data/small");
    let before = digest(&p.n.data(&p.b).join("volumes/app"));
    let stopping = {
        let da = p.n.dockerd(&p.a);
        std::thread::spawn(move || {
            da.docker_output(&[
                "run", "--rm", "-v", "app:/data", "bv-busybox", "sh", "-c",
                "head -c 629145600 /dev/urandom > /data/big && echo v2 > /data/small && md5sum /data/big",
            ])
        })
    };
    wait_mid_stream(&p.n, &p.b);
    p.n.link(&p.b, "down");
    let out = stopping.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let sum = stdout
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        stdout.trim().ends_with("/data/big"),
        "the app did not finish: {out:?}"
    );
    let vol_a = p.n.data(&p.a).join("volumes/app");
    let full = digest(&vol_a);
    assert_eq!(md5(&vol_a.join("big")), sum);
    // a's Unmount said its send failed, and kept the state as a snapshot.
    let log_a = log(&p.a);
    assert!(
        log_a.contains("the final state of app was kept as app@"),
        "{log_a}"
    );
    assert_whole(&p, &before, &full);
    p.n.link(&p.b, "up");
    assert_next_start_recovers(&p, &full, &sum);
    assert!(
        log(&p.b).contains("pulled=true"),
        "b's Mount did not pull:\n{}",
        log(&p.b)
    );
    for node in [&p.a, &p.b] {
        p.n.docker_stop(node);
    }
}

/// Two first Mounts on b pulling at once (two apps starting together, or
/// idle rounds of two volumes): each pull lands its own copy, neither
/// takes the other's half-received copy for a dead one's leftover.
#[test]
fn two_pulls_at_once_both_land() {
    let p = Pair::up("tp", "3G");
    for (docker, peer) in [(&p.da, p.n.ip(&p.b)), (&p.db, p.a_ip.clone())] {
        let line = format!("replicate:{peer}={YEARLY}");
        docker.docker(&["volume", "create", "-d", "btrfs", "-o", &line, "app2"]);
    }
    // a holds states of both that b lacks (b's volumes are Docker's fresh ones).
    let (vol, vol2) = (
        p.n.data(&p.a).join("volumes/app"),
        p.n.data(&p.a).join("volumes/app2"),
    );
    fill(&vol.join("big"), BIG, 3);
    std::fs::write(vol.join("small"), "v2\n").unwrap();
    fill(&vol2.join("big"), 8 << 20, 5);
    std::fs::write(vol2.join("small"), "other\n").unwrap();
    for volume in ["app", "app2"] {
        p.n.snapshot(&p.a, volume);
    }
    let (sum, sum2) = (md5(&vol.join("big")), md5(&vol2.join("big")));

    // app's pull is in flight when app2's starts.
    let first = start_on_b(&p);
    wait_mid_stream(&p.n, &p.b);
    let second =
        p.db.in_container("app2", "cat /data/small && md5sum /data/big");
    assert_eq!(second, format!("other\n{sum2}  /data/big"));
    let out = first.join().unwrap();
    assert!(
        out.status.success(),
        "app's start failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("v2\n{sum}  /data/big")
    );
    for node in [&p.a, &p.b] {
        p.n.docker_stop(node);
    }
}
