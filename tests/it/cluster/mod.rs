//! Cluster mode on etcd (issue 23), on three nodes of the node harness:
//! each runs a member of a three-member etcd (a partitioned node loses
//! quorum, as in production); the first two are the storage pair, each
//! with its own daemon (cluster mode) and, where the test needs apps, its
//! own dockerd. Every test names its cluster tag; the tests take one lock,
//! so their timings do not depend on each other's load.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use testkit::etcd::{self, Etcd};
use testkit::nodes::{nodes_sh, Nodes};
use testkit::wait_until;

/// OWNER_TTL in these tests: keep-alive every 3 s, fence after 6 s
/// without etcd and peer.
const TTL: u64 = 9;

/// A yearly timer: the replicate lines exist (ownership and follow need
/// an active one) but no scheduled round runs during a test.
const YEARLY: &str = "cron:0 0 1 1 *";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The three nodes: `a` and `b` the pair, `c` the third etcd member.
struct Ring {
    n: Nodes,
    a: String,
    b: String,
    a_ip: String,
    b_ip: String,
    etcd: Etcd,
}

impl Ring {
    fn up(tag: &str, docker: bool) -> Ring {
        let n = Nodes::up(tag, 3, "1G");
        let names = [n.name(1), n.name(2), n.name(3)];
        n.pair(&names[0], &names[1]);
        n.pair(&names[1], &names[0]);
        let etcd = Etcd::start(&n, &names);
        let [a, b, _] = names;
        let ring = Ring {
            a_ip: n.ip(&a),
            b_ip: n.ip(&b),
            n,
            a,
            b,
            etcd,
        };
        for node in [&ring.a, &ring.b] {
            ring.restart(node);
            if docker {
                ring.n.docker_start(node);
            }
        }
        ring
    }

    /// (Re)starts `node`'s daemon in cluster mode and waits for its lease.
    fn restart(&self, node: &str) {
        self.etcd.start_daemon(&self.n, node, TTL, &[]);
    }

    /// The cluster part of `node`'s status.
    fn cluster(&self, node: &str) -> Value {
        etcd::cluster(&self.n, node)
    }

    fn status(&self, node: &str) -> Value {
        etcd::status(&self.n, node)
    }

    /// `owner <volume>` on `node`.
    fn owner(&self, node: &str, volume: &str) -> Value {
        self.n
            .ok(node, "/VolumeDriver.Owner", json!({ "Name": volume }))
    }

    /// Creates `volume` on both nodes (through their dockerd when
    /// `docker`), each replicating to the other.
    fn volume(&self, volume: &str, docker: bool, follow: bool) {
        for (node, peer) in [(&self.a, &self.b_ip), (&self.b, &self.a_ip)] {
            let line = format!("replicate:{peer}={YEARLY}");
            let follow = format!("follow={follow}");
            if docker {
                self.n.dockerd(node).docker(&[
                    "volume", "create", "-d", "btrfs", "-o", &line, "-o", &follow, volume,
                ]);
            } else {
                let mut o = serde_json::Map::new();
                o.insert(format!("replicate:{peer}"), json!(YEARLY));
                o.insert("follow".into(), json!(follow.trim_start_matches("follow=")));
                self.n.ok(
                    node,
                    "/VolumeDriver.Create",
                    json!({ "Name": volume, "Opts": o }),
                );
            }
        }
    }

    /// A raw Mount (Docker's shape) of `volume` on `node`: its `Err`.
    fn mount(&self, node: &str, volume: &str, id: &str) -> String {
        let body = json!({ "Name": volume, "ID": id });
        let reply = self.n.post(node, "/VolumeDriver.Mount", &body);
        reply["Err"].as_str().unwrap_or_default().to_string()
    }

    fn unmount(&self, node: &str, volume: &str, id: &str) {
        let body = json!({ "Name": volume, "ID": id });
        self.n.ok(node, "/VolumeDriver.Unmount", body);
    }

    /// A file of the node's data dir, read inside the node (works while
    /// its daemon is down).
    fn read(&self, node: &str, path: &str) -> Option<String> {
        let out = self
            .n
            .exec(node, &["cat", &format!("/var/lib/buttervolume/{path}")]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Lines in the volume's `log` file on `node`.
    fn records(&self, node: &str, volume: &str) -> usize {
        self.read(node, &format!("volumes/{volume}/log"))
            .map_or(0, |t| t.lines().count())
    }

    /// Starts an app on `node` appending a sequence number to
    /// `/data/log` every 100 ms (a write that fails is skipped).
    fn app(&self, node: &str, volume: &str) {
        let mount = format!("{volume}:/data");
        let script =
            "i=0; while true; do i=$((i+1)); echo $i >> /data/log 2>/dev/null; sleep 0.1; done";
        self.n.dockerd(node).docker(&[
            "run",
            "-d",
            "--name",
            "app",
            "-v",
            &mount,
            "bv-busybox",
            "sh",
            "-c",
            script,
        ]);
    }
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn cluster_a_live_owner_keeps_its_volume_and_a_release_or_handover_moves_it() {
    let _one = lock();
    let r = Ring::up("ca", true);
    let (a, b) = (&r.a, &r.b);
    let (da, db) = (r.n.dockerd(a), r.n.dockerd(b));
    r.volume("app", true, true);
    da.docker(&[
        "run",
        "-d",
        "--name",
        "writer",
        "-v",
        "app:/data",
        "bv-busybox",
        "sh",
        "-c",
        "echo one > /data/f && sleep 1000",
    ]);
    let record = r.owner(a, "app")["Owner"].clone();
    assert_eq!(record["Node"], a.as_str(), "{record}");
    assert_eq!(record["Mounted"], true);
    let epoch = record["Epoch"].as_u64().unwrap();

    // b's Mount while a uses it: refused, naming a, at once.
    let err = r.mount(b, "app", "m1");
    assert!(
        err.contains(&format!("owned by {a}")) && err.contains("alive"),
        "{err}"
    );
    assert_eq!(r.owner(b, "app")["Owner"]["Node"], a.as_str());

    // a's app stops: released; b's app takes it (next epoch) with a's data.
    da.docker(&["rm", "-f", "writer"]);
    let released = r.owner(a, "app")["Owner"].clone();
    assert_eq!(released["Mounted"], false, "{released}");
    assert_eq!(db.in_container("app", "cat /data/f"), "one");
    let moved = r.owner(b, "app")["Owner"].clone();
    assert_eq!(moved["Node"], b.as_str(), "{moved}");
    assert_eq!(moved["Epoch"].as_u64().unwrap(), epoch + 1);
    db.in_container("app", "echo two > /data/f");

    // handover b -> a: ownership moves with the final state, no TTL wait.
    let reply = r.n.ok(
        b,
        "/VolumeDriver.Handover",
        json!({ "Name": "app", "Host": r.a_ip }),
    );
    assert_eq!(reply["Phase"], "handed-over", "{reply}");
    let handed = r.owner(a, "app")["Owner"].clone();
    assert_eq!(handed["Node"], a.as_str(), "{handed}");
    assert_eq!(handed["Epoch"].as_u64().unwrap(), epoch + 2);
    assert_eq!(da.in_container("app", "cat /data/f"), "two");
}

#[test]
fn cluster_a_killed_owner_is_taken_over_with_the_freshest_replica_and_comes_back_diverged() {
    let _one = lock();
    let r = Ring::up("cb", true);
    let (a, b) = (&r.a, &r.b);
    let db = r.n.dockerd(b);
    r.volume("app", true, true);
    r.app(a, "app");
    wait_until("the app's first records", 30, || r.records(a, "app") >= 5);
    // A replication round: what b will start from.
    let snap = r.n.snapshot(a, "app");
    r.n.send(a, &snap, &r.b_ip);
    let replicated = r
        .read(a, &format!("snapshots/{snap}/log"))
        .unwrap()
        .lines()
        .count();
    wait_until("records after the replica", 30, || {
        r.records(a, "app") > replicated + 3
    });

    r.n.kill(a);
    // b's Mount waits for a's lease, checks a does not answer (a's
    // forced command finds the daemon dead and fences the volume), and
    // takes it over with the replica.
    let last = db.in_container("app", "tail -n 1 /data/log");
    assert_eq!(last, replicated.to_string(), "not the freshest replica");
    let owner = r.owner(b, "app")["Owner"].clone();
    assert_eq!(owner["Node"], b.as_str(), "{owner}");
    let how = owner["How"].as_str().unwrap();
    assert!(
        how.contains(&format!("took over app from {a}")) && how.contains(&snap),
        "{how}"
    );
    assert_eq!(r.cluster(b)["Takeovers"], 1);
    assert!(
        r.read(a, "state/cluster/fenced/app").is_some(),
        "a's volume was not fenced"
    );
    // a's app cannot write any more.
    let before = r.records(a, "app");
    let out =
        r.n.dockerd(a)
            .docker_output(&["exec", "app", "sh", "-c", "echo x >> /data/log"]);
    assert!(!out.status.success(), "a's app still writes");
    assert_eq!(r.records(a, "app"), before);

    // a comes back: stale epoch, its writes kept as a diverged snapshot,
    // its Mount refused naming b, nothing pushed.
    r.restart(a);
    wait_until("a's diverged state", 30, || {
        !r.cluster(a)["Diverged"].as_array().unwrap().is_empty()
    });
    let diverged = r.cluster(a)["Diverged"][0]["Snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    let err = r.mount(a, "app", "m2");
    assert!(err.contains(&format!("owned by {b}")), "{err}");
    let problems = r.status(a)["Problems"].to_string();
    assert!(problems.contains("diverged"), "{problems}");
    let err = r.n.send_err(a, &diverged, &r.b_ip);
    assert!(err.contains(&format!("owned by {b}")), "{err}");
    assert!(r.read(b, &format!("snapshots/{diverged}/log")).is_none());
}

#[test]
fn cluster_a_partitioned_owner_is_read_only_before_the_takeover_then_passive() {
    let _one = lock();
    let r = Ring::up("cc", true);
    let (a, b) = (&r.a, &r.b);
    let (da, db) = (r.n.dockerd(a), r.n.dockerd(b));
    r.volume("app", true, true);
    r.app(a, "app");
    wait_until("the app's first records", 30, || r.records(a, "app") >= 5);
    let snap = r.n.snapshot(a, "app");
    r.n.send(a, &snap, &r.b_ip);

    r.n.link(a, "down");
    wait_until("a fenced", 30, || {
        r.cluster(a)["Fenced"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    });
    let fenced_at = std::fs::metadata(r.n.data(a).join("state/cluster/fenced/app"))
        .unwrap()
        .modified()
        .unwrap();
    let out = da.docker_output(&["exec", "app", "sh", "-c", "echo x >> /data/log"]);
    assert!(!out.status.success(), "a's app still writes while cut off");

    // b takes it over from the replica.
    let replicated = r.read(a, &format!("snapshots/{snap}/log")).unwrap();
    let on_b = db.in_container("app", "cat /data/log && echo b > /data/b");
    assert_eq!(on_b.trim(), replicated.trim());
    let owner = r.owner(b, "app")["Owner"].clone();
    assert_eq!(owner["Node"], b.as_str(), "{owner}");
    let took = std::time::UNIX_EPOCH + Duration::from_secs(owner["Since"].as_u64().unwrap() + 1);
    assert!(
        fenced_at <= took,
        "a was fenced after b took the volume over"
    );

    // a's link back: diverged state kept, Mount refused, nothing pushed.
    r.n.link(a, "up");
    wait_until("a's diverged state", 60, || {
        r.cluster(a)["Diverged"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
    });
    let err = r.mount(a, "app", "m1");
    assert!(err.contains(&format!("owned by {b}")), "{err}");
    da.docker_output(&["rm", "-f", "app"]);
    let diverged = r.cluster(a)["Diverged"][0]["Snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(r.read(b, &format!("snapshots/{diverged}/log")).is_none());
    assert!(r.read(a, &format!("snapshots/{diverged}/log")).is_some());

    // Passive now: b released at its app's end; a's next app starts from
    // b's state, not from its diverged one.
    assert_eq!(da.in_container("app", "cat /data/b"), "b");
    let owner = r.owner(a, "app");
    assert_eq!(owner["Owner"]["Node"], a.as_str(), "{owner}");
}

#[test]
fn cluster_etcd_down_fences_nothing_and_takes_nothing_over() {
    let _one = lock();
    let r = Ring::up("cd", true);
    let (a, b) = (&r.a, &r.b);
    r.volume("app", true, true);
    r.app(a, "app");
    wait_until("the app's first records", 30, || r.records(a, "app") >= 5);
    for k in 1..=3 {
        let out = nodes_sh(&["etcd-stop", &r.n.name(k)]);
        assert!(out.status.success());
    }
    // Past the point where a lease would have expired.
    wait_until("a lease's lifetime without etcd", 60, || {
        r.cluster(a)["SecondsSinceEtcd"].as_u64().unwrap_or(0) > TTL + 2
    });
    assert_eq!(
        r.cluster(a)["Fenced"],
        json!([]),
        "a fenced while b answers"
    );
    let now = r.records(a, "app");
    wait_until("a's app still writing", 10, || r.records(a, "app") > now);
    let err = r.mount(b, "app", "m1");
    assert!(err.contains("etcd"), "{err}");
    assert_eq!(r.cluster(b)["Owned"], json!([]));
}

#[test]
fn cluster_racing_mounts_never_give_two_owners() {
    let _one = lock();
    let r = Ring::up("ce", false);
    let (a, b) = (&r.a, &r.b);
    r.volume("race", false, false);
    let mut wins = [0, 0];
    for i in 0..100 {
        let id = format!("m{i}");
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| r.mount(a, "race", &id));
            let tb = s.spawn(|| r.mount(b, "race", &id));
            (ta.join().unwrap(), tb.join().unwrap())
        });
        assert!(
            !(ra.is_empty() && rb.is_empty()),
            "round {i}: both nodes mounted the volume"
        );
        for (k, (node, err)) in [(a, &ra), (b, &rb)].into_iter().enumerate() {
            if err.is_empty() {
                wins[k] += 1;
                r.unmount(node, "race", &id);
            }
        }
    }
    assert!(
        wins[0] + wins[1] >= 90,
        "too few Mounts succeeded: {wins:?}"
    );
}

/// A daemon killed during an acquisition (etcd says the volume is mounted
/// there, no Mount was recorded) releases it when it comes back, and the
/// partner's Mount then takes it; a daemon killed between a fence's
/// marker and its ioctl makes the volume read-only at its next start.
#[test]
fn cluster_a_daemon_killed_mid_acquisition_or_mid_fence_recovers_at_restart() {
    let _one = lock();
    let r = Ring::up("cf", false);
    let (a, b) = (&r.a, &r.b);
    r.volume("v", false, false);
    assert_eq!(r.mount(a, "v", "m1"), "");
    r.n.kill(a);
    // As if the daemon died after etcd's transaction, before the Mount
    // was recorded here.
    let out =
        r.n.exec(a, &["rm", "/var/lib/buttervolume/state/mounts.json"]);
    assert!(out.status.success(), "{out:?}");
    // A marker without the ioctl: a kill between the two.
    let dir = "/var/lib/buttervolume/state/cluster/fenced";
    assert!(r.n.exec(a, &["mkdir", "-p", dir]).status.success());
    let out = r.n.exec(a, &["touch", &format!("{dir}/v")]);
    assert!(out.status.success(), "{out:?}");
    r.restart(a);
    let log = std::fs::read_to_string(format!("/run/bvnodes/{a}/daemon.log")).unwrap();
    assert!(
        log.contains("fenced before this start: read-only until etcd says who owns it"),
        "{log}"
    );
    // etcd says a still owns it at its epoch: writable again; and no
    // container uses it here: released, so b takes it.
    wait_until("a's volume released and unfenced", 30, || {
        let owner = r.owner(b, "v");
        owner["Owner"]["Mounted"] == false && r.cluster(a)["Fenced"] == json!([])
    });
    let epoch = r.owner(b, "v")["Owner"]["Epoch"].as_u64().unwrap();
    assert_eq!(r.mount(b, "v", "m2"), "");
    let owner = r.owner(b, "v")["Owner"].clone();
    assert_eq!(owner["Node"], b.as_str(), "{owner}");
    assert_eq!(owner["Epoch"].as_u64().unwrap(), epoch + 1);
    let err = r.mount(a, "v", "m3");
    assert!(err.contains(&format!("owned by {b}")), "{err}");
}

mod cuts;
mod third_node;
