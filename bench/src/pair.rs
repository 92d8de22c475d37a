//! Two test nodes with SSH for the replication benchmarks (`replication`,
//! `replication-cpu`, `transport`, `idle-round`), on testkit's
//! [`Nodes::pair_of`], and what those benchmarks do around a send: a
//! volume of random data, a node's transmitted bytes, commands and
//! pipelines run inside a node, deletions that btrfs has finished
//! cleaning up.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use buttervolume::api::{path, NameRequest, SendRequest, SnapshotReply, SummaryReply};
use testkit::nodes::{Nodes, NODES_SH};
pub use testkit::pairs::Program;

use crate::report::timed;

/// `<tag>1 -> <tag>2` ([`Nodes::pair_of`]: preallocated images, the
/// host's `/root/.bashrc` masked inside the nodes, paired both ways as
/// `program` is deployed), `program` as both daemons.
pub struct Pair {
    pub n: Nodes,
    pub a: String,
    pub b: String,
    /// `<tag>2`'s address.
    pub ip: String,
}

impl Pair {
    pub fn up(tag: &str, size: &str, program: Program, env: &[&str]) -> Pair {
        let n = Nodes::pair_of(tag, size, program, env);
        let (a, b) = (n.name(1), n.name(2));
        let ip = n.ip(&b);
        Pair { n, a, b, ip }
    }

    /// Restarts `node`'s daemon as `program` with `env`.
    pub fn restart(&self, node: &str, program: Program, env: &[&str]) {
        self.n.stop(node);
        self.n.start_program(node, &program.path(), env);
    }

    /// A path inside `node`'s /var/lib/buttervolume, seen from here.
    pub fn data(&self, node: &str, sub: &str) -> PathBuf {
        self.n.data(node).join(sub)
    }

    /// Creates `volume` on `node` holding `mib` MiB of random data in
    /// `data` (seed 0: the same bytes on every node), synced.
    pub fn volume_with_data(&self, node: &str, volume: &str, mib: usize) {
        self.n
            .ok(node, path::CREATE, serde_json::json!({ "Name": volume }));
        let file = self.data(node, &format!("volumes/{volume}/data"));
        crate::app_data::write_file(&file, mib << 20, 0);
        exec_ok(&self.n, node, &["sync"]);
    }

    pub fn snapshot(&self, node: &str, volume: &str) -> String {
        let reply: SnapshotReply = self.n.call(
            node,
            path::SNAPSHOT,
            &NameRequest {
                name: volume.into(),
            },
        );
        reply.snapshot
    }

    /// `Snapshot.Send` from `node` (with `Detail`): the reply's summary
    /// (empty from the reference, which gives none).
    pub fn send(&self, node: &str, snapshot: &str, host: &str) -> String {
        let request = SendRequest {
            name: snapshot.into(),
            host: host.into(),
            test: false,
            compress: None,
            bwlimit: None,
            detail: true,
        };
        let reply: SummaryReply = self.n.call(node, path::SNAPSHOT_SEND, &request);
        reply.summary
    }

    /// Deletes subvolumes inside `node` (paths inside it; missing ones
    /// skipped), waits until btrfs has cleaned them up, then flushes.
    pub fn delete(&self, node: &str, paths: &[String]) {
        for p in paths {
            let seen = self.n.data(node).join(
                p.strip_prefix("/var/lib/buttervolume/")
                    .expect("a path under /var/lib/buttervolume"),
            );
            if seen.exists() {
                exec_ok(&self.n, node, &["btrfs", "subvolume", "delete", p]);
            }
        }
        exec_ok(
            &self.n,
            node,
            &["btrfs", "subvolume", "sync", "/var/lib/buttervolume"],
        );
        exec_ok(&self.n, node, &["sync"]);
    }

    /// Transmitted bytes of `node`'s eth0.
    pub fn tx_bytes(&self, node: &str) -> u64 {
        self.n.tx_bytes(self.n.daemon_pid(node))
    }

    /// `left | right`, each run inside its node: how long the pipeline
    /// took (both must succeed).
    pub fn pipeline(&self, left: (&str, &[&str]), right: (&str, &[&str])) -> Duration {
        let in_node = |node: &str, args: &[&str]| {
            let mut c = Command::new(NODES_SH);
            c.arg("exec").arg(node).args(args);
            c
        };
        let ((), took) = timed(|| {
            let mut first = in_node(left.0, left.1)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut second = in_node(right.0, right.1)
                .stdin(first.stdout.take().unwrap())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let (s1, s2) = (first.wait().unwrap(), second.wait().unwrap());
            assert!(
                s1.success() && s2.success(),
                "{left:?} | {right:?}: {s1}, {s2}"
            );
        });
        took
    }
}

/// Runs a command inside `node`, asserting success; its stdout.
pub fn exec_ok(n: &Nodes, node: &str, args: &[&str]) -> String {
    testkit::succeeded(n.exec(node, args), &format!("in {node}: {args:?}"))
}

/// From a send's summary ("...: 10.0 MiB in 0.12 s (...)"): the stream's
/// MiB and the send's own seconds.
pub fn summary_figures(summary: &str) -> Option<(f64, f64)> {
    let (_, tail) = summary.rsplit_once(": ")?;
    let mut words = tail.split_whitespace();
    let mib = words.next()?.parse().ok()?;
    (words.next()? == "MiB" && words.next()? == "in").then_some(())?;
    let secs = words.next()?.parse().ok()?;
    Some((mib, secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_from_a_summary() {
        let s = "sent v@x to 10.0.0.2 incrementally from v@w: 10.0 MiB in 0.12 s (83.3 MiB/s)";
        assert_eq!(summary_figures(s), Some((10.0, 0.12)));
        assert_eq!(summary_figures("10.0.0.2 already has v@x"), None);
    }
}
