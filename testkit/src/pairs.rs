//! Two-node pairs for the benchmarks that compare our daemon with the
//! reference 3.13 (`bench follow`, `bench handover`): throw-away nodes
//! (`tests/nodes/nodes.sh`, loop images preallocated and mounted
//! nodiscard) running either daemon, paired both ways as each is deployed
//! (ours: our forced command; the reference: a plain key), with the host's
//! `/root/.bashrc` masked inside the nodes (they share the host's /root:
//! sshd runs every SSH command through root's bash, which would source the
//! host's shell setup, 100+ ms per command here, and measure that instead
//! of the daemons). Also what the benchmarks read of a node: its eth0
//! transmitted bytes, and the reference CLI run against its daemon.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::nodes::{nodes_sh, Nodes};
use crate::{bin, reference_bin, succeeded};

/// Which daemon a pair runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    Ours,
    Reference,
}

impl Program {
    /// The daemon's program.
    pub fn path(self) -> String {
        match self {
            Program::Ours => bin().to_string(),
            Program::Reference => reference_bin().to_string_lossy().into_owned(),
        }
    }
}

fn nodes_ok(args: &[&str]) -> String {
    succeeded(nodes_sh(args), &format!("nodes.sh {args:?}"))
}

impl Nodes {
    /// Nodes `<tag>1` and `<tag>2` (`size`: each loop image, preallocated)
    /// running `program` with `env` (`KEY=VALUE`), paired both ways.
    pub fn pair_of(tag: &str, size: &str, program: Program, env: &[&str]) -> Nodes {
        crate::test_btrfs();
        let _ = nodes_sh(&["down", tag]);
        let out = Command::new(crate::nodes::NODES_SH)
            .args(["up", tag, "2", size])
            .env("BVNODES_PREALLOCATE", "1")
            .output()
            .expect("running nodes.sh");
        succeeded(out, &format!("nodes.sh up {tag} 2 {size}"));
        let nodes = Nodes {
            tag: tag.into(),
            count: 2,
        };
        let daemon = program.path();
        let (a, b) = (nodes.name(1), nodes.name(2));
        for node in [&a, &b] {
            let mut args = vec!["daemon-start", node.as_str(), daemon.as_str()];
            args.extend_from_slice(env);
            nodes_ok(&args);
            nodes.mask_bashrc(node);
        }
        for (from, to) in [(&a, &b), (&b, &a)] {
            match program {
                Program::Ours => nodes.pair(from, to),
                Program::Reference => nodes.pair_with(from, to, "none"),
            }
        }
        nodes
    }

    /// Bind-mounts an empty file over /root/.bashrc inside the node.
    fn mask_bashrc(&self, node: &str) {
        if !Path::new("/root/.bashrc").exists() {
            return;
        }
        let empty = format!("/run/bvnodes/{node}/empty-bashrc");
        std::fs::write(&empty, "").unwrap_or_else(|e| panic!("{empty}: {e}"));
        let out = self.exec(node, &["mount", "--bind", &empty, "/root/.bashrc"]);
        succeeded(out, &format!("masking /root/.bashrc in {node}"));
    }

    /// The pid of the node's daemon (it lives in the node's namespaces).
    pub fn daemon_pid(&self, node: &str) -> u32 {
        let path = format!("/run/bvnodes/{node}/daemon.pid");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.trim().parse().expect("a pid")
    }

    /// The node's eth0 transmitted bytes, from the daemon's view of the
    /// network (`/proc/<pid>/net/dev`; /sys is the host's).
    pub fn tx_bytes(&self, pid: u32) -> u64 {
        let path = format!("/proc/{pid}/net/dev");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.lines()
            .find_map(|l| {
                let (name, rest) = l.trim_start().split_once(':')?;
                (name == "eth0").then(|| rest.split_whitespace().nth(8)?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no eth0 in {path}"))
    }

    /// The reference CLI, run here against the node's daemon socket (what
    /// its users run: one HTTP request, the daemon does the work in the
    /// node); asserts success, returns the trimmed stdout.
    pub fn reference_cli(&self, node: &str, args: &[&str]) -> String {
        let out = Command::new(reference_bin())
            .args(args)
            .env("BUTTERVOLUME_SOCKET", self.socket(node))
            .output()
            .expect("running the reference CLI");
        succeeded(out, &format!("reference {args:?} on {node}"))
            .trim()
            .to_string()
    }

    /// A volume's directory on the node, seen from here.
    pub fn volume_dir(&self, node: &str, volume: &str) -> PathBuf {
        self.data(node).join("volumes").join(volume)
    }
}
