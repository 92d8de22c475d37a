//! Several nodes on this machine for replication tests: each its own network
//! and mount namespace, loop btrfs at /var/lib/buttervolume, sshd on 1122
//! with our forced command, its own daemon and, on demand, its own dockerd
//! (`tests/nodes/nodes.sh`).

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

use super::{raw_request, BIN};

pub const NODES_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nodes/nodes.sh");

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
    let out = nodes_sh(args);
    assert!(
        out.status.success(),
        "nodes.sh {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Nodes {
    /// Creates the nodes and starts a daemon on each (`size`: loop image).
    pub fn up(tag: &str, count: usize, size: &str) -> Nodes {
        super::test_btrfs();
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

    pub fn name(&self, k: usize) -> String {
        format!("{}{k}", self.tag)
    }

    pub fn ip(&self, node: &str) -> String {
        nodes_ok(&["ip", node]).trim().to_string()
    }

    /// Lets `from` send to `to` through our forced command.
    pub fn pair(&self, from: &str, to: &str) {
        let command = format!("{BIN} ssh-command");
        nodes_ok(&["pair", from, to, &command]);
    }

    /// Installs `from`'s key on `to` with a given forced command ("" = none,
    /// which is how a reference node is set up).
    pub fn pair_with(&self, from: &str, to: &str, command: &str) {
        nodes_ok(&["pair", from, to, command]);
    }

    pub fn start(&self, node: &str) {
        nodes_ok(&["daemon-start", node, BIN, "RUST_LOG=debug"]);
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

    /// The docker CLI against the node's dockerd.
    pub fn docker_output(&self, node: &str, args: &[&str]) -> Output {
        let mut all = vec!["docker", node];
        all.extend_from_slice(args);
        nodes_sh(&all)
    }

    /// [`Nodes::docker_output`], asserting success; trimmed stdout.
    pub fn docker(&self, node: &str, args: &[&str]) -> String {
        let out = self.docker_output(node, args);
        assert!(
            out.status.success(),
            "{node}: docker {args:?}: {}{}\n--- {node} dockerd log ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            super::dockerd::tail(
                std::path::Path::new(&format!("/run/bvnodes/{node}/docker/dockerd.log")),
                30
            )
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
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

    /// Snapshots `volume` on `node`; returns the snapshot's name.
    pub fn snapshot(&self, node: &str, volume: &str) -> String {
        self.ok(
            node,
            "/VolumeDriver.Snapshot",
            serde_json::json!({ "Name": volume }),
        )["Snapshot"]
            .as_str()
            .expect("a snapshot name")
            .to_string()
    }

    pub fn log(&self, node: &str) -> String {
        let daemon =
            std::fs::read_to_string(format!("/run/bvnodes/{node}/daemon.log")).unwrap_or_default();
        let tail: Vec<&str> = daemon.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for k in 1..=self.count {
                let node = self.name(k);
                eprintln!("--- {node} daemon log ---\n{}", self.log(&node));
                let ssh = std::fs::read_to_string(format!("/run/bvnodes/{node}/sshd.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = ssh.lines().rev().take(15).collect();
                eprintln!(
                    "--- {node} sshd log ---\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        let _ = nodes_sh(&["down", &self.tag]);
    }
}
