//! A Docker Swarm on three nodes of the harness ([`Nodes`]): each runs its
//! own dockerd, a Swarm manager and a member of a three-member etcd
//! ([`Etcd`]); the first two (the pair, labelled `pair=a`) run their
//! plugin daemon in cluster mode. A [`Service`] of one replica, constrained
//! to the pair, writes a sequence into its volume (a `btrfs` one whose
//! options name both nodes, each node ignoring the line naming itself, or
//! Docker's `local` one for comparison). The Swarm is driven from the third
//! node, never lost. Shared by the Swarm tests and `bench swarm`.
//!
//! A record is `<n> <container hostname> <uptime>`: numbers follow each
//! other, the hostname tells which task wrote it (a task that started from
//! an older state shows: its records replace the lost ones), and the
//! uptime (`/proc/uptime`, the machine's, 10 ms steps) when it was written.

use std::path::PathBuf;

use serde_json::Value;

use crate::etcd::{self, Etcd};
use crate::nodes::Nodes;
use crate::{wait_for, wait_until};

/// One service of one replica on the pair, writing records every 100 ms.
pub struct Service {
    pub name: String,
    pub volume: String,
    /// `btrfs`, replicated by both nodes to each other on this timer and
    /// following its container; `None`: Docker's `local` driver.
    pub replicate: Option<String>,
    /// MiB of random data the first task writes before its records.
    pub seed_mib: u32,
}

impl Service {
    /// `app` on a `btrfs` volume `data` replicated on `timer`.
    pub fn btrfs(timer: &str) -> Service {
        Service {
            name: "app".into(),
            volume: "data".into(),
            replicate: Some(timer.into()),
            seed_mib: 0,
        }
    }

    /// Appends `<n> <hostname> <uptime>` every 100 ms, continuing from
    /// the volume's last record (after seeding it when asked); stops at
    /// SIGTERM between two records.
    fn script(&self) -> String {
        let seed = match self.seed_mib {
            0 => String::new(),
            mib => format!(
                "[ -e /data/seed ] || head -c {} /dev/urandom > /data/seed || exit 1; ",
                mib << 20
            ),
        };
        format!(
            "trap 'exit 0' TERM; {seed}\
             i=$(tail -n 1 /data/log 2>/dev/null); i=${{i%% *}}; i=${{i:-0}}; \
             while true; do i=$((i+1)); read up _ < /proc/uptime; \
             echo \"$i $HOSTNAME $up\" >> /data/log || exit 1; sleep 0.1; done"
        )
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub n: u64,
    /// The writing task's container hostname.
    pub writer: String,
    /// The machine's uptime when it was written (seconds).
    pub at: f64,
}

/// The records of a log, checked: numbers from 1, each one more than the
/// last (a lost record would leave a gap or a repeat).
pub fn records(text: &str) -> Vec<Record> {
    let records: Vec<Record> = text
        .lines()
        .map(|l| {
            let mut f = l.split(' ');
            let (Some(n), Some(writer), Some(at), None) = (f.next(), f.next(), f.next(), f.next())
            else {
                panic!("record {l:?}");
            };
            Record {
                n: n.parse().unwrap(),
                writer: writer.to_string(),
                at: at.parse().unwrap(),
            }
        })
        .collect();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.n, i as u64 + 1, "records not in sequence:\n{text}");
    }
    records
}

/// The tasks that wrote `records`, in order.
pub fn writers(records: &[Record]) -> Vec<String> {
    let mut w: Vec<String> = records.iter().map(|r| r.writer.clone()).collect();
    w.dedup();
    w
}

/// The machine's uptime (seconds): the clock records are written with.
pub fn uptime() -> f64 {
    let text = std::fs::read_to_string("/proc/uptime").expect("/proc/uptime");
    text.split(' ').next().unwrap().parse().unwrap()
}

pub struct Swarm {
    pub n: Nodes,
    /// a, b (the pair), c.
    pub nodes: [String; 3],
    pub ips: [String; 3],
    /// Their Swarm node IDs.
    pub ids: [String; 3],
    pub etcd: Etcd,
    /// OWNER_TTL of the pair's daemons.
    pub ttl: u64,
}

impl Swarm {
    /// Nodes `<tag>1..3`, etcd, three managers, the pair labelled and its
    /// daemons in cluster mode (OWNER_TTL `ttl`) listed by Swarm.
    pub fn up(tag: &str, ttl: u64) -> Swarm {
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
            ttl,
        };
        for k in 0..2 {
            swarm.docker(&["node", "update", "--label-add", "pair=a", &swarm.ids[k]]);
            swarm.start_daemon(k);
        }
        // The legacy daemons announced their driver: Swarm sees it on both.
        for k in 0..2 {
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
                            &swarm.ids[k],
                        ])
                        .contains(r#""Type":"Volume","Name":"btrfs""#)
                },
            );
        }
        swarm
    }

    /// The Swarm CLI, on c (a manager that no test loses).
    pub fn docker(&self, args: &[&str]) -> String {
        self.n.dockerd(&self.nodes[2]).docker(args)
    }

    /// [`Swarm::docker`] that may fail (`None`): while the managers elect
    /// a new leader after a node loss, they answer no query.
    pub fn try_docker(&self, args: &[&str]) -> Option<String> {
        let out = self.n.dockerd(&self.nodes[2]).docker_output(args);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// (Re)starts node k's plugin daemon in cluster mode, waits for its
    /// lease.
    pub fn start_daemon(&self, k: usize) {
        self.etcd
            .start_daemon(&self.n, &self.nodes[k], self.ttl, &[]);
    }

    pub fn status(&self, k: usize) -> Value {
        etcd::status(&self.n, &self.nodes[k])
    }

    /// Creates the service (detached): one replica on the pair.
    pub fn create(&self, s: &Service) {
        let mount = match &s.replicate {
            Some(timer) => format!(
                "type=volume,source={v},target=/data,volume-driver=btrfs,\
                 volume-opt=replicate:{a}={timer},volume-opt=replicate:{b}={timer},\
                 volume-opt=follow=true",
                v = s.volume,
                a = self.ips[0],
                b = self.ips[1]
            ),
            None => format!("type=volume,source={},target=/data", s.volume),
        };
        let script = s.script();
        self.docker(&[
            "service",
            "create",
            "--detach",
            "--name",
            &s.name,
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
            &script,
        ]);
    }

    /// The IDs of the service's tasks meant to run, one a line (`None`
    /// while the managers do not answer).
    fn desired_tasks(&self, s: &Service) -> Option<String> {
        let filter = ["--filter", "desired-state=running"];
        self.try_docker(&[&["service", "ps", "-q"][..], &filter, &[&s.name]].concat())
    }

    /// The pair node (0 or 1) where the service's task runs (`None` too
    /// while the managers do not answer).
    pub fn running(&self, s: &Service) -> Option<usize> {
        let tasks = self.desired_tasks(s)?;
        for task in tasks.lines() {
            let state =
                self.try_docker(&["inspect", "-f", "{{.NodeID}} {{.Status.State}}", task])?;
            if let Some((node, "running")) = state.split_once(' ') {
                if let Some(k) = self.ids[..2].iter().position(|id| id == node) {
                    return Some(k);
                }
            }
        }
        None
    }

    /// The pair node (0 or 1) a task of the service meant to run is
    /// assigned to, whatever its state, other than the tasks in `old`;
    /// with the task's ID.
    pub fn assigned(&self, s: &Service, old: &[String]) -> Option<(usize, String)> {
        let tasks = self.desired_tasks(s)?;
        let task = tasks.lines().find(|t| !old.iter().any(|o| o == t))?;
        let node = self.try_docker(&["inspect", "-f", "{{.NodeID}}", task])?;
        let k = self.ids[..2].iter().position(|id| *id == node)?;
        Some((k, task.to_string()))
    }

    /// A file of node k's /var/lib/buttervolume (read inside the node:
    /// works while its daemon or dockerd is down).
    pub fn read(&self, k: usize, path: &str) -> String {
        let out = self.n.exec(
            &self.nodes[k],
            &["cat", &format!("/var/lib/buttervolume/{path}")],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Where a local volume of the service is on node k, seen from here
    /// (in the data root of the node's dockerd, which must run).
    fn local_volume(&self, k: usize, s: &Service) -> PathBuf {
        let inside = format!("/var/lib/docker/volumes/{}/_data", s.volume);
        self.n.dockerd(&self.nodes[k]).path(&inside)
    }

    /// The records in the service's volume on node k.
    pub fn records(&self, k: usize, s: &Service) -> Vec<Record> {
        let text = match s.replicate {
            Some(_) => self.read(k, &format!("volumes/{}/log", s.volume)),
            None => {
                std::fs::read_to_string(self.local_volume(k, s).join("log")).unwrap_or_default()
            }
        };
        records(&text)
    }

    /// Bytes of the service's volume on node k other than its log (the
    /// seed), 0 when absent.
    pub fn seed_bytes(&self, k: usize, s: &Service) -> u64 {
        match s.replicate {
            Some(_) => {
                let path = format!("/var/lib/buttervolume/volumes/{}/seed", s.volume);
                let out = self.n.exec(&self.nodes[k], &["stat", "-c", "%s", &path]);
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .unwrap_or(0)
            }
            None => std::fs::metadata(self.local_volume(k, s).join("seed")).map_or(0, |m| m.len()),
        }
    }

    /// Waits for the task on node k to have written `more` records after
    /// the `from` first ones, by a task not among `old` writers.
    pub fn wait_writing(&self, k: usize, s: &Service, from: usize, old: &[String]) -> Vec<Record> {
        wait_for(format!("new records on {}", self.nodes[k]), 120, || {
            let r = self.records(k, s);
            (r.len() >= from + 10 && !old.contains(&r[r.len() - 1].writer)).then_some(r)
        })
    }

    /// The snapshots of `volume` on node k.
    pub fn snapshots(&self, k: usize, volume: &str) -> Vec<String> {
        let out = self
            .n
            .exec(&self.nodes[k], &["ls", "/var/lib/buttervolume/snapshots"]);
        let prefix = format!("{volume}@");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|s| s.starts_with(&prefix))
            .map(str::to_string)
            .collect()
    }

    /// The Swarm state of node k as the managers see it (`ready`, `down`;
    /// `None` while they do not answer).
    pub fn node_state(&self, k: usize) -> Option<String> {
        self.try_docker(&["node", "inspect", "-f", "{{.Status.State}}", &self.ids[k]])
    }

    /// The durations (s) of the plugin requests to `endpoint` (e.g.
    /// `/VolumeDriver.Mount`) for `volume` in node k's daemon log, after
    /// its first `skip` lines; and the log's line count.
    pub fn requests(
        &self,
        k: usize,
        endpoint: &str,
        volume: &str,
        skip: usize,
    ) -> (Vec<f64>, usize) {
        let log = std::fs::read_to_string(format!("/run/bvnodes/{}/daemon.log", self.nodes[k]))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let what = format!("endpoint=\"{endpoint}\" volume=\"{volume}\" outcome=\"ok\" micros=");
        let times = lines
            .iter()
            .skip(skip)
            .filter_map(|l| l.split_once(&what)?.1.trim().parse::<f64>().ok())
            .map(|us| us / 1e6)
            .collect();
        (times, lines.len())
    }
}

mod kill;
pub use kill::kill_dockerd;
