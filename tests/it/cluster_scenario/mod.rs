//! The cluster contract end to end (issue 14): mlfmonde/cluster's deploy
//! handler (`consul/consul_watcher_deployer/handler.py`, `deploy()` and
//! `migrate()`) transliterated command for command, driving three nodes of
//! the harness (`testkit/src/nodes.rs`: each its own dockerd, plugin
//! daemon, sshd and btrfs; every node paired with every other both ways).
//!
//! What is the handler's and what stands in for the rest of the cluster:
//! - every `buttervolume ...` the handler runs goes through a reference
//!   Python CLI inside the node's namespaces (`nodes.sh exec`), 3.4 (what
//!   the cluster's consul image builds) and 3.13 alternating by step; the
//!   test checks at the end that each command form went through both;
//! - `docker volume ls -f driver=btrfs` (the node's driver is called
//!   `btrfs`, the handler's `BTRFSDRIVER`), parsed as the handler does;
//! - real `docker-compose -p <project> up -d | down | down -v` on the
//!   node's dockerd; `compose pull` is left out (no registry: the image is
//!   already on every node), `build`, `download`, maintenance and consul
//!   registrations are no-ops for the plugin and left out too;
//! - the Consul KV transfer flag (`migrate/<app>/success|failure`) is a
//!   value in the test, read by the new master as the handler does: its
//!   status is never looked at;
//! - nodes handle an event one after the other (old master, old slave,
//!   the rest), which is the order the KV flag imposes on what matters.
//!
//! The app: a compose project with two btrfs volumes, `<p>_data` and
//! `<p>_conf` (label `com.github.mlfmonde.cluster.nonmigrable=true`), and
//! one container that appends `start` to /data/log when it starts and
//! `stop` when it is stopped, writes /conf/settings once, and is given work
//! (files) while it runs. The state a node's app stopped with is read from
//! the node's disk right after the handler's `down` and compared, file by
//! file, with what the next master's `restore` gives it.
//!
//! Steps: 1) new app on node 1, replica node 2; 2) swap; 3) redeploy the
//! same placement; 4) move to node 3 without a replica; a migrate between
//! two apps on node 3; 5) the move node 3 -> node 1 with its final send
//! failing, a) link cut while it runs, b) node 1's disk full, then c) the
//! same move once nothing fails. In 5a/5b the new master's `restore` is
//! refused (README "Cluster contract", `src/takeover.rs`): its handler
//! raises before `up`, and the app keeps running on node 3 with what it
//! stopped with; 5c shows that nothing was lost.
//!
//! Each node daemon runs with SEND_BWLIMIT=32 (MiB/s) so that the 96 MiB
//! send of step 5 lasts about three seconds and can be cut while it runs.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use buttervolume::api::{ProblemKind, StatusReply};
use buttervolume::btrfs::SubvolumeIdentity;
use buttervolume::names;
use testkit::etcd::Etcd;
use testkit::metrics::{free_port, scrape, Page};
use testkit::nodes::{nodes_sh, Nodes};
use testkit::wait::Lazy;
use testkit::{entries, stderr, stdout, wait_until};

mod checks;
mod handler;
mod matrix;

const PURGE: &str = "purge:1h:1d:1w:4w:1y";
const LABEL: &str = "com.github.mlfmonde.cluster.nonmigrable";

/// Which Python CLI runs a handler command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Cli {
    V34,
    V313,
}

impl Cli {
    fn bin(self) -> PathBuf {
        match self {
            Cli::V34 => testkit::reference34_bin(),
            Cli::V313 => testkit::reference_bin(),
        }
    }
}

/// Every command form the handler uses; each must run through both CLIs.
const FORMS: &[&str] = &[
    "snapshot V",
    "send IP SNAPSHOT",
    "restore V",
    "restore V TARGET",
    "schedule snapshot 60 V",
    "schedule snapshot 0 V",
    "schedule replicate:IP 60 V",
    "schedule replicate:IP 0 V",
    "schedule purge:1h:1d:1w:4w:1y 1440 V",
    "schedule purge:1h:1d:1w:4w:1y 0 V",
];

/// A compose project: its file in a directory of its own.
struct App {
    project: String,
    dir: tempfile::TempDir,
}

impl App {
    fn new(project: &str) -> App {
        let dir = tempfile::tempdir().unwrap();
        let compose = format!(
            r#"version: "2.4"
services:
  web:
    image: bv-busybox
    command:
      - sh
      - -c
      - |
        trap 'echo stop >> /data/log; exit 0' TERM
        [ -f /conf/settings ] || echo "settings of {project}" > /conf/settings
        echo start >> /data/log
        sleep 1000000 & wait
    volumes:
      - data:/data
      - conf:/conf
volumes:
  data:
    driver: btrfs
  conf:
    driver: btrfs
    labels:
      {LABEL}: "true"
"#
        );
        std::fs::write(dir.path().join("docker-compose.yml"), compose).unwrap();
        App {
            project: project.into(),
            dir,
        }
    }

    fn data(&self) -> String {
        format!("{}_data", self.project)
    }

    fn conf(&self) -> String {
        format!("{}_conf", self.project)
    }

    /// The handler's `volumes_from_kv` (and the compose file's).
    fn volumes(&self) -> Vec<String> {
        vec![self.data(), self.conf()]
    }

    fn container(&self) -> String {
        format!("{}_web_1", self.project)
    }
}

/// Where an app runs (node indexes 0..3).
#[derive(Clone, Copy, Debug)]
struct Placement {
    master: usize,
    slave: Option<usize>,
}

fn at(master: usize, slave: Option<usize>) -> Placement {
    Placement { master, slave }
}

/// A volume's content: relative path -> FNV-1a digest of the file.
type State = BTreeMap<String, u64>;

fn state_of(dir: &Path) -> State {
    fn walk(root: &Path, dir: &Path, out: &mut State) {
        let mut list: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .collect();
        list.sort_by_key(|e| e.file_name());
        for entry in list {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            } else {
                let digest = std::fs::read(&path)
                    .unwrap()
                    .iter()
                    .fold(0xcbf29ce484222325u64, |h, b| {
                        (h ^ *b as u64).wrapping_mul(0x100000001b3)
                    });
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, digest);
            }
        }
    }
    let mut out = State::new();
    walk(dir, dir, &mut out);
    out
}

/// What the world does while a handler runs.
#[derive(Default)]
struct Hooks<'a> {
    /// On the old master, between the sends made while the app runs and
    /// its `down`: the app goes on working.
    while_running: Option<&'a dyn Fn()>,
    /// On the old master, right before the sends made after the stop.
    before_final_sends: Option<&'a dyn Fn()>,
}

/// What the handlers did during one event, for the assertions.
#[derive(Default, Debug)]
struct Record {
    /// Volume -> its content on the old master right after `down`.
    stopped: BTreeMap<String, State>,
    /// Volume -> its content on the new master right after `restore`.
    restored: BTreeMap<String, State>,
    /// (node, volume) -> snapshots the handler took, in order.
    snapshots: BTreeMap<(usize, String), Vec<String>>,
    /// The transfer flag the new master read (and ignored).
    transfer_status: Option<&'static str>,
}

struct Cluster {
    n: Nodes,
    names: Vec<String>,
    ips: Vec<String>,
    /// Each node's metrics listener, on its own 127.0.0.1.
    metrics_ports: Vec<u16>,
    /// (form, CLI) pairs run so far.
    ran: RefCell<BTreeSet<(&'static str, Cli)>>,
    /// The Consul KV transfer flag of the current event.
    kv: RefCell<Option<&'static str>>,
    record: RefCell<Record>,
}

fn all_ok(step: &str, outcome: &[Result<(), String>]) {
    for (k, result) in outcome.iter().enumerate() {
        if let Err(e) = result {
            panic!("{step}: the handler of node {} raised: {e}", k + 1);
        }
    }
}

/// The text of `file` in node `k`'s volume.
fn read(c: &Cluster, k: usize, volume: &str, file: &str) -> String {
    std::fs::read_to_string(c.data(k).join("volumes").join(volume).join(file)).unwrap()
}
