//! Several nodes on this machine for replication tests: each its own network
//! and mount namespace, loop btrfs at /var/lib/buttervolume, sshd on 1122
//! with our forced command, its own daemon and, on demand, its own dockerd
//! (`tests/nodes/nodes.sh`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use buttervolume::api::{path, NameRequest, SendRequest, SnapshotReply, SummaryReply};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::dockerd::{tail, Dockerd};
use crate::{bin, raw_request};

pub const NODES_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/nodes/nodes.sh");

/// Nodes `<tag>1..<tag>N`; torn down on drop.
pub struct Nodes {
    pub tag: String,
    pub count: usize,
}

pub fn nodes_sh(args: &[&str]) -> Output {
    Command::new(NODES_SH)
        .args(args)
        .output()
        .expect("running nodes.sh")
}

fn nodes_ok(args: &[&str]) -> String {
    crate::succeeded(nodes_sh(args), &format!("nodes.sh {args:?}"))
}

impl Nodes {
    /// Creates the nodes and starts a daemon on each (`size`: loop image).
    pub fn up(tag: &str, count: usize, size: &str) -> Nodes {
        crate::test_btrfs();
        let _ = nodes_sh(&["down", tag]);
        nodes_ok(&["up", tag, &count.to_string(), size]);
        let nodes = Nodes {
            tag: tag.into(),
            count,
        };
        for k in 1..=count {
            nodes.start(&nodes.name(k));
        }
        nodes
    }

    /// Two nodes, the first paired to send to the second: (nodes, sender,
    /// receiver, the receiver's IP).
    pub fn sender_and_receiver(tag: &str, size: &str) -> (Nodes, String, String, String) {
        let n = Nodes::up(tag, 2, size);
        let (a, b) = (n.name(1), n.name(2));
        n.pair(&a, &b);
        let b_ip = n.ip(&b);
        (n, a, b, b_ip)
    }

    pub fn name(&self, k: usize) -> String {
        format!("{}{k}", self.tag)
    }

    pub fn ip(&self, node: &str) -> String {
        nodes_ok(&["ip", node]).trim().to_string()
    }

    /// Lets `from` send to `to` through our forced command, the key scoped
    /// to `from` as `to`'s schedule names it (its address).
    pub fn pair(&self, from: &str, to: &str) {
        let command = format!("{} ssh-command --peer {}", bin(), self.ip(from));
        nodes_ok(&["pair", from, to, &command]);
    }

    /// Installs `from`'s key on `to` with a given forced command ("" = none,
    /// which is how a reference node is set up).
    pub fn pair_with(&self, from: &str, to: &str, command: &str) {
        nodes_ok(&["pair", from, to, command]);
    }

    pub fn start(&self, node: &str) {
        self.start_with(node, &[]);
    }

    /// Starts the node's daemon with more `KEY=VALUE` environment.
    pub fn start_with(&self, node: &str, env: &[&str]) {
        // Scheduler rounds every 2 s: a new job first runs at the next
        // round (as in the reference), which the tests wait on.
        let mut all = vec!["RUST_LOG=debug", "BUTTERVOLUME_TIMER=2"];
        all.extend_from_slice(env);
        self.start_program(node, bin(), &all);
    }

    /// Starts `program run` as the node's daemon (stop the running one
    /// first) with only the given `KEY=VALUE` environment: another build,
    /// or the reference buttervolume ([`crate::reference_bin`]).
    pub fn start_program(&self, node: &str, program: &str, env: &[&str]) {
        let mut args = vec!["daemon-start", node, program];
        args.extend_from_slice(env);
        nodes_ok(&args);
    }

    pub fn stop(&self, node: &str) {
        nodes_ok(&["daemon-stop", node]);
    }

    pub fn kill(&self, node: &str) {
        nodes_ok(&["daemon-kill", node]);
    }

    /// Starts the node's own dockerd (its `btrfs` driver is the node's
    /// daemon; image `bv-busybox`).
    pub fn docker_start(&self, node: &str) {
        nodes_ok(&["docker-start", node]);
    }

    pub fn docker_stop(&self, node: &str) {
        nodes_ok(&["docker-stop", node]);
    }

    /// The node's own dockerd (started by [`Nodes::docker_start`]).
    pub fn dockerd(&self, node: &str) -> Dockerd {
        Dockerd {
            dir: PathBuf::from(format!("/run/bvnodes/{node}/docker")),
        }
    }

    pub fn socket(&self, node: &str) -> PathBuf {
        PathBuf::from(format!("/run/bvnodes/{node}/btrfs.sock"))
    }

    /// The node's /var/lib/buttervolume, seen from here through the
    /// daemon's mount namespace.
    pub fn data(&self, node: &str) -> PathBuf {
        let pid = std::fs::read_to_string(format!("/run/bvnodes/{node}/daemon.pid"))
            .expect("daemon pid file");
        PathBuf::from(format!("/proc/{}/root/var/lib/buttervolume", pid.trim()))
    }

    /// Appends a paused `action` line for `volume` to the node's schedule:
    /// how a node names its partner for a volume (which scopes the
    /// partner's key there) without the line ever running in the test.
    pub fn paused_line(&self, node: &str, volume: &str, action: &str) {
        let schedule = self
            .data(node)
            .join("../../../etc/buttervolume/schedule.csv");
        let mut text = std::fs::read_to_string(&schedule).unwrap_or_default();
        text.push_str(&format!("{volume},\"{action}\",60,False\r\n"));
        std::fs::create_dir_all(schedule.parent().unwrap()).unwrap();
        std::fs::write(&schedule, text).unwrap();
    }

    /// Our CLI (run here) against the node's daemon.
    pub fn cli(&self, node: &str, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .env("BUTTERVOLUME_SOCKET", self.socket(node))
            .output()
            .expect("running the CLI")
    }

    /// Runs a command inside the node.
    pub fn exec(&self, node: &str, args: &[&str]) -> Output {
        let mut all = vec!["exec", node];
        all.extend_from_slice(args);
        nodes_sh(&all)
    }

    pub fn link(&self, node: &str, state: &str) {
        nodes_ok(&["link", node, state]);
    }

    pub fn post(&self, node: &str, path: &str, body: &Value) -> Value {
        let (_, text) = raw_request(
            &self.socket(node),
            "POST",
            path,
            body.to_string().as_bytes(),
        );
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    }

    /// POSTs and asserts success.
    pub fn ok(&self, node: &str, path: &str, body: Value) -> Value {
        let reply = self.post(node, path, &body);
        assert_eq!(
            reply["Err"],
            "",
            "{node} {path} {body}: {reply}\n--- {node} log ---\n{}",
            self.log(node)
        );
        reply
    }

    /// POSTs a typed request, asserts success and reads the typed reply.
    pub fn call<R: DeserializeOwned>(&self, node: &str, path: &str, request: &impl Serialize) -> R {
        let body = serde_json::to_value(request).unwrap();
        let reply = self.ok(node, path, body);
        serde_json::from_value(reply.clone())
            .unwrap_or_else(|e| panic!("{node} {path}: unexpected reply ({e}): {reply}"))
    }

    /// Sends `snapshot` from `node` to `host` (`Snapshot.Send`, asking for
    /// the `Detail`), asserting success; returns the reply's summary ("...
    /// in full", "... incrementally from ..."; empty from a reference
    /// daemon, which gives none).
    pub fn send(&self, node: &str, snapshot: &str, host: &str) -> String {
        let reply: SummaryReply = self.call(
            node,
            path::SNAPSHOT_SEND,
            &send_request(snapshot, host, true),
        );
        reply.summary
    }

    /// [`Nodes::send`] that must fail; returns the error.
    pub fn send_err(&self, node: &str, snapshot: &str, host: &str) -> String {
        let body = serde_json::to_value(send_request(snapshot, host, false)).unwrap();
        let reply = self.post(node, path::SNAPSHOT_SEND, &body);
        let err = reply["Err"].as_str().unwrap_or_default().to_string();
        assert!(
            !err.is_empty(),
            "sending {snapshot} to {host} succeeded: {reply}"
        );
        err
    }

    /// Snapshots `volume` on `node`; returns the snapshot's name.
    pub fn snapshot(&self, node: &str, volume: &str) -> String {
        let request = NameRequest {
            name: volume.to_string(),
        };
        let reply: SnapshotReply = self.call(node, path::SNAPSHOT, &request);
        assert!(!reply.snapshot.is_empty(), "a snapshot name");
        reply.snapshot
    }

    /// The sent markers `<snapshot>@<host>` on `node`, sorted.
    pub fn markers(&self, node: &str, host: &str) -> Vec<String> {
        let suffix = format!("@{host}");
        crate::entries(&self.data(node).join("snapshots"))
            .into_iter()
            .filter(|e| e.ends_with(&suffix))
            .collect()
    }

    pub fn log(&self, node: &str) -> String {
        tail(Path::new(&format!("/run/bvnodes/{node}/daemon.log")), 40)
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for k in 1..=self.count {
                let node = self.name(k);
                eprintln!("--- {node} daemon log ---\n{}", self.log(&node));
                let ssh = tail(Path::new(&format!("/run/bvnodes/{node}/sshd.log")), 15);
                eprintln!("--- {node} sshd log ---\n{ssh}");
            }
        }
        let _ = nodes_sh(&["down", &self.tag]);
    }
}

/// `Snapshot.Send` of `snapshot` to `host`; `detail`: ask for the summary.
fn send_request(snapshot: &str, host: &str, detail: bool) -> SendRequest {
    SendRequest {
        name: snapshot.to_string(),
        host: host.to_string(),
        test: false,
        compress: None,
        bwlimit: None,
        detail,
    }
}
