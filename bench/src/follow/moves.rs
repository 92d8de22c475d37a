//! One chain of containers on a pair, and what each move between two of
//! them cost. Container `j` runs on node 2 when `j` is even, on node 1
//! when odd; move `j` goes from container `j - 1`'s node to container
//! `j`'s. Each container prints a timestamp as its first command, the
//! sequence number the previous one left (checked: the state followed),
//! sleeps, overwrites CHANGE_MIB of the big file at a new offset, writes
//! its own number and prints a timestamp as its last command.
//!
//! Ours: once the new container's first command ran, both nodes' request
//! histograms are read (`/metrics`): the new node's Mount/Unmount since its previous
//! scrape are the follow's work before the app's first command (restore),
//! the old node's are what it served after its own container's first
//! command (the last Unmount: the push). Nothing runs between the two
//! `docker run`s. The reference: its users' script runs between them
//! (`snapshot` + `send` on the old node, `restore` on the new one).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use testkit::metrics::{http_get, Page};
use testkit::nodes::Nodes;

use super::Options;
use crate::cpu::{now, Cpu, Sampler};

/// The app. $1 = seconds, $2 = MiB to write, $3 = offset in MiB, $4 =
/// this container's number, $5 = where the volume is mounted. `adjtimex`
/// (modes 0) only reads the host's clock: containers have no time
/// namespace.
const APP: &str = r#"ts() { busybox adjtimex | busybox awk "/tv_sec/ { s = \$2 } /tv_usec/ { u = \$2 } END { printf \"%d.%06d\", s, u }"; }
echo "start $(ts)"
echo "seen $(cat "$5/seq")"
sleep "$1"
dd if=/dev/urandom of="$5/big" bs=1M count="$2" seek="$3" conv=notrunc 2>/dev/null
echo "$4" >"$5/seq"
echo "exit $(ts)""#;

/// A pair of nodes and what the chain reads of them.
pub struct Pair {
    pub nodes: Nodes,
    pub names: [String; 2],
    ips: [String; 2],
    pids: [u32; 2],
}

impl Pair {
    pub fn new(nodes: Nodes) -> Pair {
        let names = [nodes.name(1), nodes.name(2)];
        let ips = [nodes.ip(&names[0]), nodes.ip(&names[1])];
        let pids = [nodes.daemon_pid(&names[0]), nodes.daemon_pid(&names[1])];
        Pair {
            nodes,
            names,
            ips,
            pids,
        }
    }

    pub fn ip(&self, k: usize) -> String {
        self.ips[k].clone()
    }

    fn tx(&self, k: usize) -> u64 {
        self.nodes.tx_bytes(self.pids[k])
    }
}

/// Sum (seconds) and count of the Mounts and Unmounts a node served.
#[derive(Debug, Clone, Copy, Default)]
pub struct Requests {
    pub mount: (f64, u64),
    pub unmount: (f64, u64),
}

impl Requests {
    fn minus(self, o: Requests) -> Requests {
        Requests {
            mount: (self.mount.0 - o.mount.0, self.mount.1 - o.mount.1),
            unmount: (self.unmount.0 - o.unmount.0, self.unmount.1 - o.unmount.1),
        }
    }

    pub fn total(&self) -> f64 {
        self.mount.0 + self.unmount.0
    }
}

/// One container's run.
struct Container {
    cli_start: f64,
    cli_end: f64,
    start: f64,
    exit: f64,
    /// Its node's eth0 tx during the run.
    tx: u64,
    /// Ours: what its node served before its first command.
    before: Requests,
    /// Ours: what its node served after its first command (filled by the
    /// next container's scrape).
    after: Requests,
    /// The other node's eth0 tx from `docker run` to the first command
    /// (a pull would show here).
    peer_tx_before: u64,
}

/// One move, as the tables show it.
pub struct Move {
    pub variant: &'static str,
    pub j: usize,
    pub direction: String,
    pub downtime: f64,
    pub stop: f64,
    pub between: f64,
    pub start: f64,
    pub cpu_downtime: Cpu,
    pub cpu_stop: Cpu,
    pub cpu_start: Cpu,
    /// Ours: the old node's Unmounts after its app's first command.
    pub push: Requests,
    /// Ours: the new node's requests before its app's first command.
    pub restore: Requests,
    /// Ours: the old node's tx from the new `docker run` to its app's
    /// first command (the push had not landed and the Mount pulled).
    pub pull_tx: u64,
    /// The old node's tx: ours during the old container's run (its push),
    /// the reference during `send`.
    pub tx: u64,
    /// The reference's script: snapshot, send, restore seconds and the
    /// CPU of the whole script.
    pub script: Option<(f64, f64, f64, Cpu)>,
}

impl Move {
    pub fn warmup(&self) -> bool {
        self.j == 1
    }
}

pub struct Chain<'a> {
    o: &'a Options,
    cpu: &'a Sampler,
    pair: &'a Pair,
    /// Ours: the port of the nodes' metrics listener; 0 for the reference.
    metrics_port: u16,
    seen: [Requests; 2],
    previous: Option<Container>,
}

impl<'a> Chain<'a> {
    pub fn new(o: &'a Options, cpu: &'a Sampler, pair: &'a Pair, metrics_port: u16) -> Chain<'a> {
        let mut chain = Chain {
            o,
            cpu,
            pair,
            metrics_port,
            seen: Default::default(),
            previous: None,
        };
        if metrics_port != 0 {
            chain.seen = [chain.requests(0), chain.requests(1)];
        }
        chain
    }

    /// The node's Mount/Unmount figures so far, from its `/metrics`.
    fn requests(&self, k: usize) -> Requests {
        // The counters are live (only the status figures of a page are
        // cached for a second): no need for `metrics::scrape`'s fresh page.
        let node = &self.pair.names[k];
        let (code, text) = http_get(node, self.metrics_port, "/metrics")
            .unwrap_or_else(|| panic!("no metrics listener on {node}"));
        assert_eq!(code, 200, "{node} /metrics: {text}");
        let page = Page::parse(&text);
        let get = |endpoint: &str, what: &str| {
            let name = format!("buttervolume_request_duration_seconds_{what}");
            page.get(&name, &[("endpoint", endpoint)]).unwrap_or(0.0)
        };
        let pair = |endpoint: &str| (get(endpoint, "sum"), get(endpoint, "count") as u64);
        Requests {
            mount: pair("/VolumeDriver.Mount"),
            unmount: pair("/VolumeDriver.Unmount"),
        }
    }

    /// What node `k` served since the chain last looked.
    fn served(&mut self, k: usize) -> Requests {
        let now = self.requests(k);
        let delta = now.minus(self.seen[k]);
        self.seen[k] = now;
        delta
    }

    /// Containers `first..=last` at `path`; the moves between them.
    pub fn run(
        &mut self,
        variant: &'static str,
        first: usize,
        last: usize,
        path: &str,
    ) -> Vec<Move> {
        let mut moves = Vec::new();
        for j in first..=last {
            let new = 1 - j % 2;
            let old = 1 - new;
            let note = if j == 1 { " (warm-up)" } else { "" };
            eprintln!("{variant}: container {j} on {}{note}", self.pair.names[new]);
            let script = (self.metrics_port == 0 && j > 0).then(|| self.script(old, new));
            let c = self.container(variant, new, j, path);
            if let Some(prev) = self.previous.replace(c) {
                let c = self.previous.as_ref().unwrap();
                let w = |t0, t1| self.cpu.window(t0, t1);
                moves.push(Move {
                    variant,
                    j,
                    direction: format!("{} -> {}", self.pair.names[old], self.pair.names[new]),
                    downtime: c.start - prev.exit,
                    stop: prev.cli_end - prev.exit,
                    between: c.cli_start - prev.cli_end,
                    start: c.start - c.cli_start,
                    cpu_downtime: w(prev.exit, c.start),
                    cpu_stop: w(prev.exit, prev.cli_end),
                    cpu_start: w(c.cli_start, c.start),
                    push: prev.after,
                    restore: c.before,
                    pull_tx: c.peer_tx_before,
                    tx: script.as_ref().map_or(prev.tx, |s| s.1),
                    script: script.map(|s| s.0),
                });
            }
        }
        moves
    }

    /// The reference users' move: snapshot and send on the old node,
    /// restore on the new one; (seconds of each and CPU, send's tx).
    fn script(&self, old: usize, new: usize) -> ((f64, f64, f64, Cpu), u64) {
        let (nodes, names) = (&self.pair.nodes, &self.pair.names);
        let t0 = now();
        let snapshot = nodes.reference_cli(&names[old], &["snapshot", "vol"]);
        let t1 = now();
        let tx0 = self.pair.tx(old);
        nodes.reference_cli(&names[old], &["send", &self.pair.ip(new), &snapshot]);
        let tx = self.pair.tx(old) - tx0;
        let t2 = now();
        nodes.reference_cli(&names[new], &["restore", &snapshot]);
        let t3 = now();
        ((t1 - t0, t2 - t1, t3 - t2, self.cpu.window(t0, t3)), tx)
    }

    fn container(&mut self, variant: &str, k: usize, j: usize, path: &str) -> Container {
        let o = self.o;
        let seek = crate::app_data::offset(j, o.sizes.data_mib, o.change_mib).to_string();
        let expect = if j == 0 {
            "fill".to_string()
        } else {
            (j - 1).to_string()
        };
        let node = self.pair.names[k].clone();
        let docker_host = self.pair.nodes.dockerd(&node).docker_host();
        let mount = format!("vol:{path}");
        let args: Vec<String> = [
            "run",
            "--rm",
            "-v",
            mount.as_str(),
            "bv-busybox",
            "sh",
            "-c",
            APP,
            "sh",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([
            o.app_seconds.to_string(),
            o.change_mib.to_string(),
            seek,
            j.to_string(),
            path.to_string(),
        ])
        .collect();
        let (tx0, peer_tx0) = (self.pair.tx(k), self.pair.tx(1 - k));
        let cli_start = now();
        let mut child = Command::new("docker")
            .env("DOCKER_HOST", &docker_host)
            .args(&args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the docker CLI");
        let mut c = Container {
            cli_start,
            cli_end: 0.0,
            start: 0.0,
            exit: 0.0,
            tx: 0,
            before: Requests::default(),
            after: Requests::default(),
            peer_tx_before: 0,
        };
        let mut seen = None;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            let stamp = |l: &str| l.parse::<f64>().unwrap_or_else(|e| panic!("{l:?}: {e}"));
            if let Some(t) = line.strip_prefix("start ") {
                c.start = stamp(t);
                c.peer_tx_before = self.pair.tx(1 - k) - peer_tx0;
                if self.metrics_port != 0 {
                    c.before = self.served(k);
                    let after = self.served(1 - k);
                    if let Some(prev) = self.previous.as_mut() {
                        prev.after = after;
                    }
                }
            } else if let Some(t) = line.strip_prefix("exit ") {
                c.exit = stamp(t);
            } else if let Some(s) = line.strip_prefix("seen ") {
                seen = Some(s.to_string());
            }
        }
        let status = child.wait().unwrap();
        c.cli_end = now();
        c.tx = self.pair.tx(k) - tx0;
        assert!(
            status.success(),
            "{variant} container {j} on {node}: {status}"
        );
        assert!(
            c.start > 0.0 && c.exit > 0.0,
            "{variant} container {j}: no timestamps"
        );
        assert_eq!(
            seen.as_deref(),
            Some(expect.as_str()),
            "{variant} container {j} on {node}: the state did not follow"
        );
        c
    }
}
