//! Docker Swarm (issue 24), on three nodes of the node harness: each runs
//! its own dockerd, a Swarm manager and a member of a three-member etcd;
//! the first two (the pair, labelled `pair=a`) run their plugin daemon in
//! cluster mode. One service of one replica, constrained to the pair,
//! writes a sequence into a `btrfs` volume whose options name both nodes
//! (each node ignores the line naming itself). The Swarm is observed from
//! the third node, never lost.
//!
//! A record is `<n> <container hostname>`: numbers follow each other, and
//! the hostname tells which task wrote it, so a task that started from an
//! older state shows (its records replace the lost ones).

use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

use testkit::etcd::{self, Etcd};
use testkit::nodes::Nodes;
use testkit::{wait_for, wait_until};

/// OWNER_TTL: a dead owner's lease expires 6 s after its last keep-alive.
const TTL: u64 = 6;
/// Replication every 2 seconds (cron with a seconds field).
const EVERY_2S: &str = "cron:*/2 * * * * *";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Appends `<n> <hostname>` every 100 ms, continuing from the volume's
/// last record; stops at SIGTERM between two records.
const WRITER: &str = "trap 'exit 0' TERM; \
    i=$(tail -n 1 /data/log 2>/dev/null); i=${i%% *}; i=${i:-0}; \
    while true; do i=$((i+1)); echo \"$i $HOSTNAME\" >> /data/log || exit 1; sleep 0.1; done";

struct Swarm {
    n: Nodes,
    /// a, b (the pair), c.
    nodes: [String; 3],
    ips: [String; 3],
    /// Their Swarm node IDs.
    ids: [String; 3],
    etcd: Etcd,
}

impl Swarm {
    fn up(tag: &str) -> Swarm {
        let n = Nodes::up(tag, 3, "1G");
        let nodes = [n.name(1), n.name(2), n.name(3)];
        let ips = nodes.clone().map(|x| n.ip(&x));
        let a = &nodes[0];
        n.pair(a, &nodes[1]);
        n.pair(&nodes[1], a);
        let etcd = Etcd::start(&n, &nodes);
        for node in &nodes {
            n.docker_start(node);
        }
        // Three managers: a advertises its node IP, b and c join it.
        n.dockerd(a)
            .docker(&["swarm", "init", "--advertise-addr", &ips[0]]);
        let token = n
            .dockerd(a)
            .docker(&["swarm", "join-token", "-q", "manager"]);
        let leader = format!("{}:2377", ips[0]);
        for (node, ip) in nodes.iter().zip(&ips).skip(1) {
            n.dockerd(node).docker(&[
                "swarm",
                "join",
                "--token",
                &token,
                "--advertise-addr",
                ip,
                &leader,
            ]);
        }
        let ids = nodes
            .clone()
            .map(|x| n.dockerd(&x).docker(&["info", "-f", "{{.Swarm.NodeID}}"]));
        let swarm = Swarm {
            n,
            nodes,
            ips,
            ids,
            etcd,
        };
        for k in 0..2 {
            let id = swarm.node_id(k);
            swarm.docker(&["node", "update", "--label-add", "pair=a", &id]);
            swarm.start_daemon(k);
        }
        // The legacy daemons announced their driver: Swarm sees it on both.
        for k in 0..2 {
            let id = swarm.node_id(k);
            wait_until(
                format!("{} listing the btrfs driver", swarm.nodes[k]),
                60,
                || {
                    swarm
                        .docker(&[
                            "node",
                            "inspect",
                            "-f",
                            "{{json .Description.Engine.Plugins}}",
                            &id,
                        ])
                        .contains(r#""Type":"Volume","Name":"btrfs""#)
                },
            );
        }
        swarm
    }

    /// The Swarm CLI, on c (a manager that no test loses).
    fn docker(&self, args: &[&str]) -> String {
        self.n.dockerd(&self.nodes[2]).docker(args)
    }

    fn node_id(&self, k: usize) -> String {
        self.ids[k].clone()
    }

    /// (Re)starts node k's plugin daemon in cluster mode, waits for its
    /// lease.
    fn start_daemon(&self, k: usize) {
        self.etcd.start_daemon(&self.n, &self.nodes[k], TTL, &[]);
    }

    fn status(&self, k: usize) -> Value {
        etcd::status(&self.n, &self.nodes[k])
    }

    /// The service: one replica on the pair, its volume replicated by
    /// both nodes to each other every 2 s, following its container.
    fn service(&self) {
        let mount = format!(
            "type=volume,source=data,target=/data,volume-driver=btrfs,\
             volume-opt=replicate:{a}={EVERY_2S},volume-opt=replicate:{b}={EVERY_2S},\
             volume-opt=follow=true",
            a = self.ips[0],
            b = self.ips[1]
        );
        self.docker(&[
            "service",
            "create",
            "--detach",
            "--name",
            "app",
            "--replicas",
            "1",
            "--constraint",
            "node.labels.pair==a",
            "--stop-grace-period",
            "5s",
            "--mount",
            &mount,
            "bv-busybox",
            "sh",
            "-c",
            WRITER,
        ]);
    }

    /// The pair node (0 or 1) where the service's task runs.
    fn running(&self) -> Option<usize> {
        let tasks = self.docker(&[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            "app",
        ]);
        let ids = &self.ids[..2];
        for task in tasks.lines() {
            let state = self.docker(&["inspect", "-f", "{{.NodeID}} {{.Status.State}}", task]);
            if let Some((node, "running")) = state.split_once(' ') {
                if let Some(k) = ids.iter().position(|id| id == node) {
                    return Some(k);
                }
            }
        }
        None
    }

    /// The volume's log on node k (read inside the node: works while its
    /// daemon or dockerd is down).
    fn log(&self, k: usize, path: &str) -> String {
        let out = self.n.exec(
            &self.nodes[k],
            &["cat", &format!("/var/lib/buttervolume/{path}")],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn records(&self, k: usize) -> Vec<Record> {
        records(&self.log(k, "volumes/data/log"))
    }

    /// Waits for the task on node k to have written `more` records after
    /// the `from` first ones, by a task not among `old` writers.
    fn wait_writing(&self, k: usize, from: usize, old: &[String]) -> Vec<Record> {
        wait_for(format!("new records on {}", self.nodes[k]), 120, || {
            let r = self.records(k);
            (r.len() >= from + 10 && !old.contains(&r[r.len() - 1].1)).then_some(r)
        })
    }

    /// The snapshots of `data` on node k.
    fn snapshots(&self, k: usize) -> Vec<String> {
        let out = self
            .n
            .exec(&self.nodes[k], &["ls", "/var/lib/buttervolume/snapshots"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|s| s.starts_with("data@"))
            .map(str::to_string)
            .collect()
    }
}

/// (number, writer).
type Record = (u64, String);

/// The records of a log, checked: numbers from 1, each one more than the
/// last (a lost record would leave a gap or a repeat).
fn records(text: &str) -> Vec<Record> {
    let records: Vec<Record> = text
        .lines()
        .map(|l| {
            let (n, host) = l.split_once(' ').unwrap_or_else(|| panic!("record {l:?}"));
            (n.parse().unwrap(), host.to_string())
        })
        .collect();
    for (i, (n, _)) in records.iter().enumerate() {
        assert_eq!(*n, i as u64 + 1, "records not in sequence:\n{text}");
    }
    records
}

fn writers(records: &[Record]) -> Vec<String> {
    let mut w: Vec<String> = records.iter().map(|r| r.1.clone()).collect();
    w.dedup();
    w
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The task moves between the pair's nodes, by a forced update and by a
/// drain: each new task starts from exactly what the old one wrote (the
/// old node's whole log is the start of the new one's), nothing lost.
#[test]
fn swarm_a_rolling_update_and_a_drain_move_the_task_and_lose_no_record() {
    let _one = lock();
    let s = Swarm::up("swa");
    s.service();
    let mut x = wait_for("the task running", 120, || s.running());
    let mut seen = s.wait_writing(x, 0, &[]);

    // docker service update --force: stopped on x, started on the other
    // node (Swarm may pick x again: forced again until it moves).
    for attempt in 0.. {
        if attempt == 3 {
            // Swarm may keep placing the task on x (seen in CI: six
            // forced updates in a row): each restart there kept every
            // record; the drain below moves it for sure.
            eprintln!("swarm: three forced updates kept the task on its node");
            break;
        }
        let started = Instant::now();
        s.docker(&["service", "update", "--detach", "--force", "app"]);
        let old = writers(&seen);
        let (k, r) = wait_for("the updated task writing", 120, || {
            let k = s.running()?;
            let r = s.records(k);
            (r.len() > seen.len() && !old.contains(&r[r.len() - 1].1)).then_some((k, r))
        });
        if k != x {
            // x's log is final: the new task started from all of it.
            let left = s.records(x);
            assert!(left.starts_with(&seen), "x lost records");
            assert!(r.starts_with(&left), "the new task lost records");
            eprintln!(
                "swarm: update --force moved the task in {:?} ({} records)",
                started.elapsed(),
                left.len()
            );
            x = k;
            seen = r;
            break;
        }
        assert!(
            r.starts_with(&seen),
            "the task restarted on its node lost records"
        );
        seen = r;
    }

    // docker node update --availability drain on x: the task moves.
    let id = s.node_id(x);
    let started = Instant::now();
    s.docker(&["node", "update", "--availability", "drain", &id]);
    let y = 1 - x;
    let old = writers(&seen);
    let moved = s.wait_writing(y, seen.len(), &old);
    eprintln!("swarm: the drain moved the task in {:?}", started.elapsed());
    let left = s.records(x);
    assert!(left.starts_with(&seen), "x lost records");
    assert!(moved.starts_with(&left), "the drained task lost records");
    let owner =
        s.n.ok(&s.nodes[y], "/VolumeDriver.Owner", json!({"Name": "data"}));
    assert_eq!(owner["Owner"]["Node"], s.nodes[y].as_str(), "{owner}");
    s.docker(&["node", "update", "--availability", "active", &id]);
}

/// Node loss: x's dockerd (with its containers) and plugin killed, its
/// link cut. Swarm runs the task on the partner, which takes the volume
/// over with the freshest replica: every record up to the last
/// replication. Back, x's plugin refuses the volume naming the new
/// owner, keeps its diverged records and pushes nothing.
#[test]
fn swarm_node_loss_runs_the_task_on_the_partner_and_fences_the_old_node() {
    let _one = lock();
    let s = Swarm::up("swb");
    s.service();
    let x = wait_for("the task running", 120, || s.running());
    let y = 1 - x;
    s.wait_writing(x, 0, &[]);
    // Replicas reach y every 2 s.
    wait_until("replicas on the partner", 60, || s.snapshots(y).len() >= 2);

    let started = Instant::now();
    kill_dockerd(&s.n.dockerd(&s.nodes[x]));
    s.n.kill(&s.nodes[x]);
    s.n.link(&s.nodes[x], "down");
    let on_x = s.records(x);
    // The freshest replica on y, fixed from now on.
    let freshest = s
        .snapshots(y)
        .iter()
        .map(|snap| records(&s.log(y, &format!("snapshots/{snap}/log"))))
        .max_by_key(Vec::len)
        .unwrap();
    assert!(!freshest.is_empty());
    assert!(on_x.starts_with(&freshest));

    let moved = s.wait_writing(y, freshest.len(), &writers(&on_x));
    eprintln!(
        "swarm: node loss to the task writing on the partner: {:?}; {} of {} records lost",
        started.elapsed(),
        on_x.len() - freshest.len(),
        on_x.len()
    );
    assert!(
        moved.starts_with(&freshest),
        "the partner did not start from the freshest replica"
    );
    let owner =
        s.n.ok(&s.nodes[y], "/VolumeDriver.Owner", json!({"Name": "data"}));
    assert_eq!(owner["Owner"]["Node"], s.nodes[y].as_str(), "{owner}");

    // x back: its plugin finds the volume taken over.
    s.n.link(&s.nodes[x], "up");
    s.n.docker_start(&s.nodes[x]);
    s.start_daemon(x);
    let diverged = wait_for("x's diverged state", 60, || {
        s.status(x)["Cluster"]["Diverged"][0]["Snapshot"]
            .as_str()
            .map(str::to_string)
    });
    let kept = records(&s.log(x, &format!("snapshots/{diverged}/log")));
    assert_eq!(kept, on_x, "x's diverged records were not kept as written");
    let body = json!({"Name": "data", "ID": "m1"});
    let reply = s.n.post(&s.nodes[x], "/VolumeDriver.Mount", &body);
    let err = reply["Err"].as_str().unwrap_or_default();
    assert!(err.contains(&format!("owned by {}", s.nodes[y])), "{reply}");
    // Refused naming the owner (once x's own scheduled attempt, refused
    // too, no longer holds the volume's send lock).
    let err = wait_for("x's send refused by ownership", 30, || {
        let err = s.n.send_err(&s.nodes[x], &diverged, &s.ips[y]);
        (!err.contains("in progress")).then_some(err)
    });
    assert!(err.contains(&format!("owned by {}", s.nodes[y])), "{err}");
    assert!(
        !s.snapshots(y).contains(&diverged),
        "x pushed its diverged state"
    );
    // The task still runs on y, on y's records.
    assert_eq!(s.running(), Some(y));
}

/// Kills (SIGKILL) a node's dockerd, everything in its mount namespace
/// (containerd, shims) and their descendants (the containers, in their
/// own namespaces): the node's Docker lost at once, as in a power cut.
/// The set is taken before the first kill (a killed shim's children are
/// reparented).
fn kill_dockerd(dockerd: &testkit::dockerd::Dockerd) {
    use std::collections::{HashMap, HashSet};
    use std::os::unix::fs::MetadataExt;
    let pid = dockerd.pid();
    let ns_of = |p: u32| {
        std::fs::metadata(format!("/proc/{p}/ns/mnt"))
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    let key = ns_of(pid).expect("dockerd's mount namespace");
    let mut parent = HashMap::new();
    let mut doomed = HashSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        // `pid (comm) state ppid ...`: comm may hold spaces, not `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent.insert(p, ppid);
        }
        if ns_of(p) == Some(key) {
            doomed.insert(p);
        }
    }
    loop {
        let children: Vec<u32> = parent
            .iter()
            .filter(|(p, pp)| doomed.contains(*pp) && !doomed.contains(*p))
            .map(|(p, _)| *p)
            .collect();
        if children.is_empty() {
            break;
        }
        doomed.extend(children);
    }
    for p in &doomed {
        let _ = std::process::Command::new("kill")
            .args(["-9", &p.to_string()])
            .status();
    }
    wait_until("the node's Docker gone", 30, || {
        doomed.iter().all(|p| {
            // Gone, or a zombie its new parent has not reaped yet.
            std::fs::read_to_string(format!("/proc/{p}/stat")).map_or(true, |stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        })
    });
}

/// The legacy daemon makes its driver known to its engine at start:
/// `docker info` lists `btrfs` though nothing used it (without the
/// announcement, only `local`, and Swarm finds no node for the service).
#[test]
fn swarm_the_legacy_daemon_announces_its_driver_to_its_engine() {
    let n = Nodes::up("swc", 1, "1G");
    let node = n.name(1);
    // The daemon starts after the engine here.
    n.stop(&node);
    n.docker_start(&node);
    let docker = n.dockerd(&node);
    assert_eq!(
        docker.docker(&["info", "-f", "{{json .Plugins.Volume}}"]),
        r#"["local"]"#
    );
    n.start(&node);
    wait_until("the engine listing btrfs", 60, || {
        docker
            .docker(&["info", "-f", "{{json .Plugins.Volume}}"])
            .contains(r#""btrfs""#)
    });
    assert!(n
        .log(&node)
        .contains("driver announced to the Docker engine"));
}
