//! The cluster contract end to end (issue 14): mlfmonde/cluster's deploy
//! handler (`consul/consul_watcher_deployer/handler.py`, `deploy()` and
//! `migrate()`) transliterated command for command, driving three nodes of
//! the harness (`tests/common/nodes.rs`: each its own dockerd, plugin
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
use testkit::metrics::{free_port, scrape, Page};
use testkit::nodes::{nodes_sh, Nodes};
use testkit::wait::Lazy;
use testkit::{bin, entries, stderr, stdout, wait_until};

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

impl Cluster {
    fn up() -> Cluster {
        let n = Nodes::up("cs", 3, "2G");
        let names: Vec<String> = (1..=3).map(|k| n.name(k)).collect();
        let mut metrics_ports = Vec::new();
        for a in &names {
            for b in &names {
                if a != b {
                    n.pair(a, b);
                }
            }
            n.stop(a);
            let port = free_port(a);
            metrics_ports.push(port);
            let out = nodes_sh(&[
                "daemon-start",
                a,
                bin(),
                "RUST_LOG=debug",
                // Rounds every 2 s: the handler's new jobs first run at
                // the next round, which steps wait on.
                "BUTTERVOLUME_TIMER=2",
                "BUTTERVOLUME_SEND_BWLIMIT=32",
                &format!("BUTTERVOLUME_METRICS_ADDR=127.0.0.1:{port}"),
            ]);
            assert!(out.status.success(), "{}", stderr(&out));
            n.docker_start(a);
        }
        let ips = names.iter().map(|k| n.ip(k)).collect();
        Cluster {
            n,
            names,
            ips,
            metrics_ports,
            ran: RefCell::default(),
            kv: RefCell::default(),
            record: RefCell::default(),
        }
    }

    fn data(&self, k: usize) -> PathBuf {
        self.n.data(&self.names[k])
    }

    fn log(&self, k: usize) -> String {
        std::fs::read_to_string(format!("/run/bvnodes/{}/daemon.log", self.names[k]))
            .unwrap_or_default()
    }

    // ------------------------------------------------------------ commands

    /// The handler's `do()` of a `buttervolume` command, on node `k`:
    /// stdout on success, the error otherwise (the handler raises).
    fn bv(&self, k: usize, cli: Cli, form: &'static str, args: &[&str]) -> Result<String, String> {
        self.ran.borrow_mut().insert((form, cli));
        let bin = cli.bin();
        let mut all = vec![bin.to_str().unwrap()];
        all.extend_from_slice(args);
        let started = std::time::Instant::now();
        let out = self.n.exec(&self.names[k], &all);
        eprintln!(
            "  {} {cli:?} {args:?}: {:.2} s",
            self.names[k],
            started.elapsed().as_secs_f64()
        );
        match out.status.success() {
            true => Ok(stdout(&out).trim().to_string()),
            false => Err(format!(
                "{} buttervolume {args:?} on {}: {}",
                match cli {
                    Cli::V34 => "3.4",
                    Cli::V313 => "3.13",
                },
                self.names[k],
                stderr(&out)
            )),
        }
    }

    /// `docker-compose -p <project> <args>` against node `k`'s dockerd.
    fn compose(&self, k: usize, app: &App, args: &[&str]) -> Result<(), String> {
        let host = self.n.dockerd(&self.names[k]).docker_host();
        let started = std::time::Instant::now();
        let out = Command::new("docker-compose")
            .env("DOCKER_HOST", host)
            .env("COMPOSE_HTTP_TIMEOUT", "300")
            .args(["-p", &app.project])
            .args(args)
            .current_dir(app.dir.path())
            .output()
            .expect("docker-compose is required (apt-get install docker-compose)");
        eprintln!(
            "  {} compose {args:?}: {:.2} s",
            self.names[k],
            started.elapsed().as_secs_f64()
        );
        match out.status.success() {
            true => Ok(()),
            false => Err(format!(
                "docker-compose {args:?} on {}: {}",
                self.names[k],
                stderr(&out)
            )),
        }
    }

    fn docker(&self, k: usize, args: &[&str]) -> String {
        self.n.dockerd(&self.names[k]).docker(args)
    }

    /// `docker volume ls -f driver=btrfs`, parsed as the handler does.
    fn listed(&self, k: usize) -> Vec<String> {
        self.docker(k, &["volume", "ls", "-f", "driver=btrfs"])
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
            .collect()
    }

    fn running(&self, k: usize, app: &App) -> bool {
        let name = format!("name={}", app.container());
        !self.docker(k, &["ps", "-q", "-f", &name]).is_empty()
    }

    // ------------------------------------------------- the handler's Volume

    /// `Volume.snapshot()`: only a volume Docker lists is snapshotted.
    fn snapshot(&self, k: usize, cli: Cli, volume: &str) -> Result<Option<String>, String> {
        if !self.listed(k).iter().any(|v| v == volume) {
            return Ok(None);
        }
        let snap = self.bv(k, cli, "snapshot V", &["snapshot", volume])?;
        self.record
            .borrow_mut()
            .snapshots
            .entry((k, volume.to_string()))
            .or_default()
            .push(snap.clone());
        Ok(Some(snap))
    }

    /// `volume.send(volume.snapshot(), ip)`: a missing snapshot is sent as
    /// `None`, as Python formats it.
    fn snapshot_and_send(&self, k: usize, cli: Cli, volume: &str, to: usize) -> Result<(), String> {
        let snap = self.snapshot(k, cli, volume)?;
        let snap = snap.unwrap_or_else(|| "None".into());
        self.bv(k, cli, "send IP SNAPSHOT", &["send", &self.ips[to], &snap])?;
        Ok(())
    }

    fn schedule(
        &self,
        k: usize,
        cli: Cli,
        app: &App,
        action: &str,
        timer: &str,
    ) -> Result<(), String> {
        let form = match (action.split(':').next().unwrap(), timer) {
            ("snapshot", "60") => "schedule snapshot 60 V",
            ("snapshot", "0") => "schedule snapshot 0 V",
            ("replicate", "60") => "schedule replicate:IP 60 V",
            ("replicate", "0") => "schedule replicate:IP 0 V",
            ("purge", "1440") => "schedule purge:1h:1d:1w:4w:1y 1440 V",
            ("purge", "0") => "schedule purge:1h:1d:1w:4w:1y 0 V",
            other => panic!("not a handler schedule: {other:?}"),
        };
        for volume in app.volumes() {
            self.bv(k, cli, form, &["schedule", action, timer, &volume])?;
        }
        Ok(())
    }

    fn enable_replicate(
        &self,
        k: usize,
        cli: Cli,
        app: &App,
        on: bool,
        to: usize,
    ) -> Result<(), String> {
        let action = format!("replicate:{}", self.ips[to]);
        self.schedule(k, cli, app, &action, if on { "60" } else { "0" })
    }

    fn enable_snapshot(&self, k: usize, cli: Cli, app: &App, on: bool) -> Result<(), String> {
        self.schedule(k, cli, app, "snapshot", if on { "60" } else { "0" })
    }

    fn enable_purge(&self, k: usize, cli: Cli, app: &App, on: bool) -> Result<(), String> {
        self.schedule(k, cli, app, PURGE, if on { "1440" } else { "0" })
    }

    /// `Volume.restore(snapshot=None, target)`: `restore <volume> [target]`.
    fn restore(
        &self,
        k: usize,
        cli: Cli,
        volume: &str,
        target: Option<&str>,
    ) -> Result<String, String> {
        match target {
            None => self.bv(k, cli, "restore V", &["restore", volume]),
            Some(t) => self.bv(k, cli, "restore V TARGET", &["restore", volume, t]),
        }
    }

    // --------------------------------------------------- the handler's deploy

    /// The `deploy` event on every node; each node's outcome (an error is
    /// where its handler raised).
    fn deploy(
        &self,
        app: &App,
        old: Option<Placement>,
        new: Placement,
        cli: Cli,
        hooks: &Hooks,
    ) -> Vec<Result<(), String>> {
        *self.record.borrow_mut() = Record::default();
        let mut order: Vec<usize> = Vec::new();
        if let Some(old) = old {
            order.push(old.master);
            order.extend(old.slave);
        }
        let rest: Vec<usize> = (0..3).filter(|k| !order.contains(k)).collect();
        order.extend(rest);
        let mut outcome: Vec<Result<(), String>> = vec![Ok(()); 3];
        for me in order {
            let started = std::time::Instant::now();
            outcome[me] = self.handle_deploy(me, app, old, new, cli, hooks);
            eprintln!(
                "handler of {} ({cli:?}): {:.1} s",
                self.names[me],
                started.elapsed().as_secs_f64()
            );
        }
        outcome
    }

    fn handle_deploy(
        &self,
        me: usize,
        app: &App,
        old: Option<Placement>,
        new: Placement,
        cli: Cli,
        hooks: &Hooks,
    ) -> Result<(), String> {
        let was_master = old.is_some_and(|o| o.master == me);
        let was_slave = old.is_some_and(|o| o.slave == Some(me));
        if was_master {
            let old = old.unwrap();
            if new.master != me {
                for volume in app.volumes() {
                    self.snapshot_and_send(me, cli, &volume, new.master)?;
                }
            }
            if let Some(work) = hooks.while_running {
                work();
            }
            self.compose(me, app, &["down"])?;
            self.remember_stopped(me, app);
            match old.slave {
                Some(slave) => self.enable_replicate(me, cli, app, false, slave)?,
                None => self.enable_snapshot(me, cli, app, false)?,
            }
            self.enable_purge(me, cli, app, false)?;
            *self.kv.borrow_mut() = None; // clean_notif
            if new.master == me {
                for volume in app.volumes() {
                    self.snapshot(me, cli, &volume)?;
                }
                self.compose(me, app, &["up", "-d"])?;
                self.enable_schedules(me, cli, app, new)?;
            } else {
                self.notify_transfer(me, app, || {
                    if let Some(before) = hooks.before_final_sends {
                        before();
                    }
                    for volume in app.volumes() {
                        self.snapshot_and_send(me, cli, &volume, new.master)?;
                    }
                    Ok(())
                })?;
                self.compose(me, app, &["down", "-v"])?;
                if new.slave == Some(me) {
                    self.enable_purge(me, cli, app, true)?;
                }
            }
        } else if was_slave {
            self.enable_purge(me, cli, app, false)?;
            if new.master == me {
                self.take_over(me, app, new, cli)?;
            } else if new.slave == Some(me) {
                self.enable_purge(me, cli, app, true)?;
            }
        } else if new.master == me {
            if old.is_some() {
                self.take_over(me, app, new, cli)?;
            } else {
                self.compose(me, app, &["up", "-d"])?;
                self.enable_schedules(me, cli, app, new)?;
            }
        } else if new.slave == Some(me) {
            self.enable_purge(me, cli, app, true)?;
        }
        Ok(())
    }

    /// slave -> master and nothing -> master with an old master: wait for
    /// the transfer flag (its value is not looked at), restore, up.
    fn take_over(&self, me: usize, app: &App, new: Placement, cli: Cli) -> Result<(), String> {
        let status = self
            .kv
            .borrow_mut()
            .take()
            .ok_or("Waited too much :( Master did not send a notification")?;
        self.record.borrow_mut().transfer_status = Some(status);
        for volume in app.volumes() {
            self.restore(me, cli, &volume, None)?;
        }
        for volume in app.volumes() {
            let state = state_of(&self.data(me).join("volumes").join(&volume));
            self.record.borrow_mut().restored.insert(volume, state);
        }
        self.compose(me, app, &["up", "-d"])?;
        self.enable_schedules(me, cli, app, new)
    }

    fn enable_schedules(
        &self,
        me: usize,
        cli: Cli,
        app: &App,
        new: Placement,
    ) -> Result<(), String> {
        match new.slave {
            Some(slave) => self.enable_replicate(me, cli, app, true, slave)?,
            None => self.enable_snapshot(me, cli, app, true)?,
        }
        self.enable_purge(me, cli, app, true)
    }

    /// `notify_transfer()`: the flag, and on failure the app up again here.
    fn notify_transfer(
        &self,
        me: usize,
        app: &App,
        transfer: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), String> {
        match transfer() {
            Ok(()) => {
                *self.kv.borrow_mut() = Some("success");
                Ok(())
            }
            Err(e) => {
                *self.kv.borrow_mut() = Some("failure");
                self.compose(me, app, &["up", "-d"])?;
                Err(e)
            }
        }
    }

    /// Not the handler's: the test reads what the app left on the disk.
    fn remember_stopped(&self, me: usize, app: &App) {
        for volume in app.volumes() {
            let state = state_of(&self.data(me).join("volumes").join(&volume));
            self.record.borrow_mut().stopped.insert(volume, state);
        }
    }

    // ------------------------------------------------------------ the world

    /// The running app does some work on node `k`.
    fn work(&self, k: usize, app: &App, what: &str) {
        let script =
            format!("echo {what} >> /data/log && head -c 1048576 /dev/urandom > /data/{what}.bin");
        self.docker(k, &["exec", &app.container(), "sh", "-c", &script]);
    }

    // ------------------------------------------------------------ assertions

    /// `scheduled` on node `k` (through the CLI of `cli`), as a set.
    fn scheduled(&self, k: usize, cli: Cli) -> BTreeSet<String> {
        let bin = cli.bin();
        let out = self
            .n
            .exec(&self.names[k], &[bin.to_str().unwrap(), "scheduled"]);
        assert!(out.status.success(), "scheduled: {}", stderr(&out));
        // 3.13 appends " " (or " (paused)") to every line, 3.4 nothing.
        stdout(&out)
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    /// What the handler leaves scheduled on each node for `app` at `place`.
    fn expected_schedule(&self, k: usize, app: &App, place: Placement) -> BTreeSet<String> {
        let mut lines = BTreeSet::new();
        for volume in app.volumes() {
            if place.master == k {
                match place.slave {
                    Some(s) => lines.insert(format!("replicate:{} 60 {volume}", self.ips[s])),
                    None => lines.insert(format!("snapshot 60 {volume}")),
                };
            }
            if place.master == k || place.slave == Some(k) {
                lines.insert(format!("{PURGE} 1440 {volume}"));
            }
        }
        lines
    }

    /// The app runs on the master only, its volumes exist there only, and
    /// the schedules are exactly the handler's on every node.
    fn assert_placement(&self, step: &str, app: &App, place: Placement, cli: Cli) {
        self.assert_placed(step, app, place, cli, true)
    }

    /// [`Cluster::assert_placement`]; with `scheduled` false, no node has
    /// any schedule line (after a failed move: the handler removed the old
    /// master's before the transfer and its failure path does not put
    /// them back).
    fn assert_placed(&self, step: &str, app: &App, place: Placement, cli: Cli, scheduled: bool) {
        for k in 0..3 {
            let node = &self.names[k];
            let master = place.master == k;
            assert_eq!(
                self.running(k, app),
                master,
                "{step}: app running on {node}?"
            );
            let listed: BTreeSet<String> = self.listed(k).into_iter().collect();
            let expected: BTreeSet<String> = match master {
                true => app.volumes().into_iter().collect(),
                false => BTreeSet::new(),
            };
            assert_eq!(listed, expected, "{step}: docker volumes on {node}");
            for volume in app.volumes() {
                let on_disk = self.data(k).join("volumes").join(&volume).exists();
                assert_eq!(on_disk, master, "{step}: {volume} on {node}'s disk?");
            }
            let expected = match scheduled {
                true => self.expected_schedule(k, app, place),
                false => BTreeSet::new(),
            };
            assert_eq!(
                self.scheduled(k, cli),
                expected,
                "{step}: schedule of {node}"
            );
        }
    }

    /// The new master was given exactly what the old one stopped with.
    fn assert_moved_intact(&self, step: &str, app: &App) {
        let record = self.record.borrow();
        for volume in app.volumes() {
            let stopped = &record.stopped[&volume];
            assert!(!stopped.is_empty(), "{step}: {volume} was empty");
            assert_eq!(
                record.restored.get(&volume),
                Some(stopped),
                "{step}: {volume} on the new master differs from what the old one stopped with"
            );
        }
        assert_eq!(record.transfer_status, Some("success"), "{step}");
    }

    /// The handler's last snapshot of each volume on `from` (taken after
    /// the stop) was sent to `to`: marker on `from`, received snapshot on
    /// `to`.
    fn assert_final_sent(&self, step: &str, app: &App, from: usize, to: usize) -> Vec<String> {
        let record = self.record.borrow();
        let mut finals = Vec::new();
        for volume in app.volumes() {
            let taken = &record.snapshots[&(from, volume.clone())];
            let last = taken.last().unwrap().clone();
            let marker = format!("{last}@{}", self.ips[to]);
            let markers: Vec<String> = self
                .n
                .markers(&self.names[from], &self.ips[to])
                .into_iter()
                .filter(|m| m.starts_with(&format!("{volume}@")))
                .collect();
            assert_eq!(
                markers,
                vec![marker],
                "{step}: {volume}'s marker on {}",
                self.names[from]
            );
            let landed = self.data(to).join("snapshots").join(&last);
            let id = buttervolume::btrfs::identity(&landed)
                .unwrap_or_else(|e| panic!("{step}: {last} not on {}: {e}", self.names[to]));
            assert!(id.read_only && id.received_uuid.is_some(), "{step}: {last}");
            finals.push(last);
        }
        finals
    }

    /// Waits for the scheduled replicate round (due at once when
    /// scheduled) to have pushed `volume` from `master` to `slave`: a
    /// marker for the slave that was not there before.
    fn wait_replicated(
        &self,
        master: usize,
        slave: usize,
        volume: &str,
        before: &[String],
    ) -> String {
        let prefix = format!("{volume}@");
        let mut found = String::new();
        wait_until(
            &format!(
                "the scheduled replication of {volume} to {}",
                self.names[slave]
            ),
            60,
            || {
                let markers = self.n.markers(&self.names[master], &self.ips[slave]);
                match markers
                    .into_iter()
                    .find(|m| m.starts_with(&prefix) && !before.contains(m))
                {
                    Some(m) => {
                        found = m;
                        true
                    }
                    None => false,
                }
            },
        );
        found
    }

    /// A move whose final send failed: the old master's handler raised
    /// and started the app again on exactly what it stopped with; the new
    /// master's handler raised at its first `restore` (refused) and made
    /// nothing: no volume, no container, no partial snapshot. Returns the
    /// newest snapshot of the data volume that did land on `new`.
    fn assert_failed_move(
        &self,
        step: &str,
        app: &App,
        outcome: &[Result<(), String>],
        old: usize,
        new: usize,
    ) -> String {
        let data = app.data();
        let raised = outcome[old]
            .as_ref()
            .expect_err("the final send did not fail");
        assert!(raised.contains(r#"["send", "#), "{step}: {raised}");
        assert!(
            outcome[new].is_err(),
            "{step}: the new master's handler went on: {:?}",
            outcome[new]
        );
        let record = self.record.borrow();
        assert_eq!(record.transfer_status, Some("failure"), "{step}");
        assert!(record.restored.is_empty(), "{step}: something was restored");
        // Back up on the old master, with what it stopped with.
        let mut now = state_of(&self.data(old).join("volumes").join(&data));
        let log = read(self, old, &data, "log");
        assert!(log.ends_with("stop\nstart\n"), "{step}: {log}");
        now.remove("log");
        let mut stopped = record.stopped[&data].clone();
        stopped.remove("log");
        assert_eq!(now, stopped, "{step}: the old master lost data");
        // The new master: nothing partial, the failed snapshot absent.
        let failed = record.snapshots[&(old, data.clone())].last().unwrap();
        let dir = self.data(new).join("snapshots");
        assert!(
            !dir.join(failed).exists(),
            "{step}: {failed} landed after all"
        );
        for name in self.snapshots_of(new, &data) {
            let id = buttervolume::btrfs::identity(&dir.join(&name)).unwrap();
            assert!(id.read_only, "{step}: {name} is partial");
        }
        self.newest_snapshot(new, &data)
    }

    /// `buttervolume status --json` on node `k` (our CLI) and its
    /// metrics page, taken while the node's snapshots dir did not change,
    /// each checked against the disk ([`Cluster::assert_status_true`]).
    fn status_and_metrics(&self, step: &str, k: usize) -> (StatusReply, Page) {
        let dir = self.data(k).join("snapshots");
        let mut taken = None;
        wait_until(
            &format!(
                "{step}: a status of node {} taken while its snapshots stayed put",
                k + 1
            ),
            60,
            || {
                let before = entries(&dir);
                let out = self.n.cli(&self.names[k], &["status", "--json"]);
                let text = testkit::succeeded(out, "buttervolume status --json");
                let page = scrape(&self.names[k], self.metrics_ports[k]);
                if entries(&dir) != before {
                    return false;
                }
                let status = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
                taken = Some((status, page));
                true
            },
        );
        let (status, page) = taken.unwrap();
        self.assert_status_true(step, k, &status, &page);
        (status, page)
    }

    /// What status and the metrics say of node `k` is what its disk
    /// holds: per volume the snapshots (markers aside) and the newest in
    /// creation order; per peer the newest marker of that host, when it
    /// was recorded, and the snapshots made here after the one it names
    /// (unsent, and the lag: the age of the oldest of them); a peer for
    /// every marker host; problems sorted worst first and their volumes
    /// listed first; the problems gauge counting them by kind.
    fn assert_status_true(&self, step: &str, k: usize, st: &StatusReply, page: &Page) {
        let dir = self.data(k).join("snapshots");
        let on_disk: Vec<(String, SubvolumeIdentity)> = entries(&dir)
            .into_iter()
            .filter(|e| !e.starts_with('.'))
            .filter_map(|e| {
                buttervolume::btrfs::identity(&dir.join(&e))
                    .ok()
                    .map(|id| (e, id))
            })
            .collect();
        let node = &self.names[k];
        for v in &st.volumes {
            let ctx = format!("{step}: {} on {node}", v.name);
            let mut snaps: Vec<&(String, SubvolumeIdentity)> = on_disk
                .iter()
                .filter(|(e, _)| names::volume_of(e) == v.name && !names::is_marker(e))
                .collect();
            snaps.sort_by_key(|(_, id)| id.creation_order());
            assert_eq!(v.snapshots, snaps.len(), "{ctx}");
            assert_eq!(
                v.newest_snapshot.as_deref(),
                snaps.last().map(|(e, _)| e.as_str()),
                "{ctx}"
            );
            let vol = [("volume", v.name.as_str())];
            assert_eq!(
                page.value("buttervolume_volume_snapshots", &vol),
                snaps.len() as f64,
                "{ctx}"
            );
            let markers: Vec<&(String, SubvolumeIdentity)> = on_disk
                .iter()
                .filter(|(e, _)| names::volume_of(e) == v.name && names::is_marker(e))
                .collect();
            for (m, _) in &markers {
                let host = names::marker_host(m).unwrap();
                assert!(
                    v.peers.iter().any(|p| p.host == host),
                    "{ctx}: no peer {host}"
                );
            }
            for p in &v.peers {
                let ctx = format!("{ctx}, peer {}", p.host);
                let newest = markers
                    .iter()
                    .filter(|(e, _)| names::marker_host(e) == Some(p.host.as_str()))
                    .max_by_key(|(_, id)| id.creation_order());
                let series = [("volume", v.name.as_str()), ("peer", p.host.as_str())];
                let held_at = newest.map(|(m, id)| {
                    let source = names::marker_source(m);
                    assert_eq!(p.sent_snapshot.as_deref(), Some(source), "{ctx}");
                    assert_eq!(
                        p.last_success.map(|t| t.timestamp()),
                        Some(id.otime),
                        "{ctx}"
                    );
                    assert_eq!(
                        page.value(
                            "buttervolume_replication_last_success_timestamp_seconds",
                            &series
                        ),
                        id.otime as f64,
                        "{ctx}"
                    );
                    snaps
                        .iter()
                        .find(|(e, _)| e == source)
                        .map_or(id.creation_order(), |(_, s)| s.creation_order())
                });
                if newest.is_none() {
                    assert_eq!((&p.sent_snapshot, p.last_success), (&None, None), "{ctx}");
                }
                let unsent: Vec<&&(String, SubvolumeIdentity)> = snaps
                    .iter()
                    .filter(|(_, id)| id.received_uuid.is_none())
                    .filter(|(_, id)| held_at.is_none_or(|at| id.creation_order() > at))
                    .collect();
                assert_eq!(p.unsent_snapshots, unsent.len(), "{ctx}");
                assert_eq!(
                    page.value("buttervolume_replication_unsent_snapshots", &series),
                    unsent.len() as f64,
                    "{ctx}"
                );
                match unsent.first() {
                    None => assert_eq!(p.lag_seconds, 0, "{ctx}"),
                    Some((_, id)) => {
                        // `Now` travels in whole seconds.
                        let lag = (st.now.timestamp() - id.otime).max(0);
                        assert!(
                            (p.lag_seconds - lag).abs() <= 1,
                            "{ctx}: {} vs {lag}",
                            p.lag_seconds
                        );
                    }
                }
            }
        }
        let kinds: Vec<ProblemKind> = st.problems.iter().map(|p| p.kind).collect();
        let mut sorted = kinds.clone();
        sorted.sort();
        assert_eq!(kinds, sorted, "{step}: problems not worst first on {node}");
        let with_problem = |name: &str| {
            st.problems
                .iter()
                .any(|p| p.volume.as_deref() == Some(name))
        };
        let flags: Vec<bool> = st.volumes.iter().map(|v| with_problem(&v.name)).collect();
        assert!(
            flags.windows(2).all(|w| w[0] || !w[1]),
            "{step}: volumes with a problem not first on {node}: {:?}",
            st.volumes.iter().map(|v| &v.name).collect::<Vec<_>>()
        );
        for kind in ProblemKind::ALL {
            let count = kinds.iter().filter(|k| **k == kind).count();
            assert_eq!(
                page.value("buttervolume_problems", &[("kind", kind.as_str())]),
                count as f64,
                "{step}: {} problems on {node}",
                kind.as_str()
            );
        }
    }

    /// The failed final send shows on the old master: its first problem is
    /// `send-failed` for the data volume and the new master, that volume
    /// comes first with the send as its last error, and the peer says so.
    /// Returns when the peer's failure was recorded.
    fn assert_send_failure_shown(
        &self,
        step: &str,
        app: &App,
        old: usize,
        new: usize,
    ) -> chrono::DateTime<chrono::Utc> {
        let (data, ip) = (app.data(), &self.ips[new]);
        let (st, page) = self.status_and_metrics(step, old);
        let first = &st.problems[0];
        assert_eq!(
            first.kind,
            ProblemKind::SendFailed,
            "{step}: {:?}",
            st.problems
        );
        assert_eq!(first.volume.as_deref(), Some(data.as_str()), "{step}");
        assert_eq!(first.peer.as_deref(), Some(ip.as_str()), "{step}");
        assert_eq!(st.volumes[0].name, data, "{step}: problems first");
        let last_error = st.volumes[0].last_error.clone().unwrap_or_default();
        assert!(
            last_error.starts_with(&format!("send to {ip}: ")),
            "{step}: {last_error}"
        );
        let peer = st.volumes[0].peers.iter().find(|p| &p.host == ip).unwrap();
        assert!(peer.last_failure.is_some(), "{step}: {peer:?}");
        // The state that did not land is unsent.
        assert!(peer.unsent_snapshots >= 1, "{step}: {peer:?}");
        assert!(
            page.value("buttervolume_problems", &[("kind", "send-failed")]) >= 1.0,
            "{step}"
        );
        peer.last_failure_at.unwrap()
    }

    /// A counter of node `k`'s metrics now (0 when absent).
    fn counter(&self, k: usize, name: &str, labels: &[(&str, &str)]) -> f64 {
        scrape(&self.names[k], self.metrics_ports[k])
            .get(name, labels)
            .unwrap_or(0.0)
    }

    /// The handler's command forms that did not go through both CLIs.
    fn forms_not_run_through_both(&self) -> Vec<(&'static str, Cli)> {
        let ran = self.ran.borrow();
        FORMS
            .iter()
            .flat_map(|f| [(*f, Cli::V34), (*f, Cli::V313)])
            .filter(|pair| !ran.contains(pair))
            .collect()
    }

    /// The handler's `migrate` event on `node` (source and target app
    /// both there): the target down, `restore <src> <tgt>` for each pair
    /// of volumes whose target Docker does not label non-migrable, up.
    fn migrate(&self, source: &App, target: &App, node: usize, cli: Cli) -> Result<(), String> {
        self.compose(node, target, &["down"])?;
        for (src, tgt) in source.volumes().iter().zip(target.volumes()) {
            if self.migrable(node, &tgt) {
                self.restore(node, cli, src, Some(&tgt))?;
            }
        }
        self.compose(node, target, &["up", "-d"])
    }

    /// `Volume.migrable_volume`: the Docker label, as the handler reads it.
    fn migrable(&self, k: usize, volume: &str) -> bool {
        let labels = self.docker(k, &["volume", "inspect", "-f", "{{json .Labels}}", volume]);
        let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
        let flag = labels[LABEL].as_str().unwrap_or("false").to_lowercase();
        !(flag == "true" || flag == "1")
    }

    /// The newest snapshot of `volume` on node `k`, btrfs creation order.
    fn newest_snapshot(&self, k: usize, volume: &str) -> String {
        let dir = self.data(k).join("snapshots");
        self.snapshots_of(k, volume)
            .into_iter()
            .max_by_key(|s| {
                buttervolume::btrfs::identity(&dir.join(s))
                    .unwrap()
                    .creation_order()
            })
            .unwrap()
    }

    fn markers_of(&self, k: usize, to: usize, volume: &str) -> Vec<String> {
        let prefix = format!("{volume}@");
        self.n
            .markers(&self.names[k], &self.ips[to])
            .into_iter()
            .filter(|m| m.starts_with(&prefix))
            .collect()
    }

    fn snapshots_of(&self, k: usize, volume: &str) -> Vec<String> {
        let prefix = format!("{volume}@");
        entries(&self.data(k).join("snapshots"))
            .into_iter()
            .filter(|e| e.starts_with(&prefix) && e.matches('@').count() == 1)
            .collect()
    }
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

#[test]
fn the_deploy_handlers_transition_matrix_on_three_nodes() {
    let t0 = std::time::Instant::now();
    let c = Cluster::up();
    let app = App::new("shop");
    let (data, conf) = (app.data(), app.conf());
    let [n1, n2, n3] = [0, 1, 2];

    // 1) New app on node 1 with its replica on node 2: nothing -> master,
    // nothing -> slave, nothing -> nothing.
    let step = "step 1 (new app)";
    let place1 = at(n1, Some(n2));
    all_ok(
        step,
        &c.deploy(&app, None, place1, Cli::V34, &Hooks::default()),
    );
    c.assert_placement(step, &app, place1, Cli::V34);
    // The replicate lines are due at once: the running app's state is
    // pushed to the slave (both volumes: the app wrote into each).
    for volume in app.volumes() {
        let marker = c.wait_replicated(n1, n2, &volume, &[]);
        let snap = marker.rsplit_once('@').unwrap().0;
        assert!(
            c.data(n2).join("snapshots").join(snap).exists(),
            "{step}: {snap}"
        );
    }
    assert_eq!(read(&c, n1, &data, "log"), "start\n");
    c.work(n1, &app, "one");
    eprintln!("step 1 done: {:.1} s", t0.elapsed().as_secs_f64());

    // 2) Swap: master -> slave on node 1, slave -> master on node 2.
    let step = "step 2 (swap)";
    let place2 = at(n2, Some(n1));
    let work = || c.work(n1, &app, "two");
    let hooks = Hooks {
        while_running: Some(&work),
        ..Hooks::default()
    };
    all_ok(
        step,
        &c.deploy(&app, Some(place1), place2, Cli::V313, &hooks),
    );
    c.assert_moved_intact(step, &app);
    c.assert_final_sent(step, &app, n1, n2);
    {
        let record = c.record.borrow();
        let stopped = &record.stopped[&data];
        // What was written after the first send, and at the stop, came along.
        assert!(stopped.contains_key("two.bin"), "{step}: {stopped:?}");
    }
    // The old master's `down` ran with its replicate line still active:
    // the last Unmount already sent the stopped state to the old slave.
    assert!(
        c.log(n1).contains(&format!("followed: sent {data}@")),
        "{step}"
    );
    // The new master's first Mount had no replicate line yet (the handler
    // schedules it after `up`): nothing followed there.
    assert!(!c.log(n2).contains("followed: restored"), "{step}");
    c.assert_placement(step, &app, place2, Cli::V34);
    assert_eq!(read(&c, n2, &data, "log"), "start\none\ntwo\nstop\nstart\n");
    c.wait_replicated(n2, n1, &data, &[]);
    // The new master's status: the new slave holds what the marker says,
    // replicated by the scheduled line, nothing left unsent.
    wait_until(
        &format!("{step}: node 2's status of {data} caught up"),
        60,
        || {
            let (st, _) = c.status_and_metrics(step, n2);
            let v = st.volumes.iter().find(|v| v.name == data).unwrap();
            let peer = v.peers.iter().find(|p| p.host == c.ips[n1]).unwrap();
            assert_eq!(peer.replicate_timer.as_deref(), Some("60"), "{step}");
            assert_eq!(peer.last_failure, None, "{step}");
            peer.sent_snapshot.is_some() && peer.unsent_snapshots == 0 && peer.lag_seconds == 0
        },
    );
    // The new slave: its volumes went with `down -v`; what it received is
    // no volume of its own.
    let (st, _) = c.status_and_metrics(step, n1);
    assert!(
        st.volumes.iter().all(|v| v.name != data),
        "{step}: {:?}",
        st.volumes
    );
    c.work(n2, &app, "three");
    eprintln!("step 2 done: {:.1} s", t0.elapsed().as_secs_f64());

    // 3) Redeploy the same placement: master -> master on node 2 (no
    // restore), slave -> slave on node 1.
    let step = "step 3 (redeploy)";
    let before = c.markers_of(n2, n1, &data);
    let n1_had = c.snapshots_of(n1, &data);
    all_ok(
        step,
        &c.deploy(&app, Some(place2), place2, Cli::V34, &Hooks::default()),
    );
    c.assert_placement(step, &app, place2, Cli::V313);
    {
        let record = c.record.borrow();
        // The snapshot after the stop, kept here; the app went on with
        // exactly the data it stopped with (no restore).
        let taken = &record.snapshots[&(n2, data.clone())];
        assert_eq!(taken.len(), 1, "{step}: {taken:?}");
        let snap = c.data(n2).join("snapshots").join(&taken[0]);
        assert_eq!(state_of(&snap), record.stopped[&data], "{step}");
        assert!(
            record.restored.is_empty(),
            "{step}: master -> master restored"
        );
        // The slave got the stopped state from the last Unmount.
        let got: Vec<String> = c
            .snapshots_of(n1, &data)
            .into_iter()
            .filter(|s| !n1_had.contains(s))
            .collect();
        assert!(
            got.iter()
                .any(|s| state_of(&c.data(n1).join("snapshots").join(s)) == record.stopped[&data]),
            "{step}: node 1 never got the stopped state: {got:?}"
        );
    }
    assert_eq!(
        read(&c, n2, &data, "log"),
        "start\none\ntwo\nstop\nstart\nthree\nstop\nstart\n"
    );
    c.wait_replicated(n2, n1, &data, &before);
    c.work(n2, &app, "four");
    eprintln!("step 3 done: {:.1} s", t0.elapsed().as_secs_f64());

    // 4) Move to node 3 without a replica: master -> nothing (node 2),
    // slave -> nothing (node 1), nothing -> master (node 3).
    let step = "step 4 (move to node 3)";
    let place4 = at(n3, None);
    let work = || c.work(n2, &app, "five");
    let hooks = Hooks {
        while_running: Some(&work),
        ..Hooks::default()
    };
    all_ok(
        step,
        &c.deploy(&app, Some(place2), place4, Cli::V313, &hooks),
    );
    c.assert_moved_intact(step, &app);
    c.assert_final_sent(step, &app, n2, n3);
    c.assert_placement(step, &app, place4, Cli::V34);
    // The snapshot line (no slave), due at once, snapshots the running app.
    wait_until("node 3's scheduled snapshot", 60, || {
        c.snapshots_of(n3, &data).iter().any(|s| {
            let id = buttervolume::btrfs::identity(&c.data(n3).join("snapshots").join(s));
            id.is_ok_and(|id| id.received_uuid.is_none())
        })
    });
    let (st, _) = c.status_and_metrics(step, n3);
    assert!(st.volumes.iter().any(|v| v.name == data), "{step}");
    eprintln!("step 4 done: {:.1} s", t0.elapsed().as_secs_f64());

    // Migrate between two apps on node 3 (the handler's `migrate` event,
    // source and target both there): `restore <src> <tgt>` only into
    // volumes Docker does not label non-migrable.
    let pre = App::new("pre");
    all_ok(
        "pre",
        &c.deploy(&pre, None, at(n3, None), Cli::V313, &Hooks::default()),
    );
    let pre_settings = read(&c, n3, &pre.conf(), "settings");
    c.migrate(&app, &pre, n3, Cli::V313).unwrap();
    let newest = c.newest_snapshot(n3, &data);
    let mut expected = state_of(&c.data(n3).join("snapshots").join(&newest));
    expected.insert("log".into(), 0); // the target app starts again and logs
    let mut got = state_of(&c.data(n3).join("volumes").join(pre.data()));
    got.insert("log".into(), 0);
    assert_eq!(
        got, expected,
        "migrate: pre's data is not shop's newest snapshot"
    );
    assert_eq!(
        read(&c, n3, &pre.conf(), "settings"),
        pre_settings,
        "migrate overwrote pre_conf"
    );
    // Docker lost shop_conf's label on node 3 (the volume came from a
    // restore, not from Docker): the handler's check would take it as
    // migrable. The plugin's own flag refuses the overwrite.
    assert!(c.migrable(n3, &conf), "Docker kept the label after all");
    // pre's scheduled snapshot line first runs at the scheduler's next
    // round (as the reference's): the refusal needs a snapshot to restore.
    wait_until("pre_conf's scheduled snapshot on node 3", 60, || {
        !c.snapshots_of(n3, &pre.conf()).is_empty()
    });
    let err = c
        .restore(n3, Cli::V34, &pre.conf(), Some(&conf))
        .unwrap_err();
    assert!(
        err.contains("non-migrable") || err.contains("nonmigrable"),
        "{err}"
    );
    assert_eq!(read(&c, n3, &conf, "settings"), "settings of shop\n");
    c.compose(n3, &pre, &["down", "-v"]).unwrap();
    for volume in pre.volumes() {
        c.bv(
            n3,
            Cli::V34,
            "schedule snapshot 0 V",
            &["schedule", "snapshot", "0", &volume],
        )
        .unwrap();
        c.bv(
            n3,
            Cli::V313,
            "schedule purge:1h:1d:1w:4w:1y 0 V",
            &["schedule", PURGE, "0", &volume],
        )
        .unwrap();
    }
    c.assert_placement("after the migrate", &app, place4, Cli::V313);
    eprintln!("migrate done: {:.1} s", t0.elapsed().as_secs_f64());

    // 5) The same kind of move (node 3 -> node 1, no replica), its final
    // send failing: a) the link cut while the send runs, b) the new
    // master's disk full. The handler on node 3 raises, flags the failure
    // and starts the app again; the handler on node 1 ignores the flag and
    // runs `restore` for each volume, which would bring back the older
    // state that did land. The plugin refuses it (crate::takeover).
    let place5 = at(n1, None);
    let big = |name: &str| {
        let script = format!(
            "head -c 100663296 /dev/urandom > /data/{name}.bin && echo {name} >> /data/log"
        );
        c.docker(n3, &["exec", &app.container(), "sh", "-c", &script]);
    };

    let step = "step 5a (link cut during the final send)";
    let work = || big("big");
    let cutter: RefCell<Option<std::thread::JoinHandle<()>>> = RefCell::default();
    let cut = || {
        let snapshots = c.data(n1).join("snapshots");
        let node = c.names[n1].clone();
        *cutter.borrow_mut() = Some(std::thread::spawn(move || {
            wait_until("the final send to land data on node 1", 60, || {
                entries(&snapshots).iter().any(|e| {
                    e.starts_with(".recv.")
                        && std::fs::metadata(snapshots.join(e).join("big.bin"))
                            .is_ok_and(|m| m.len() > 8 << 20)
                })
            });
            let out = nodes_sh(&["link", &node, "down"]);
            assert!(out.status.success(), "{}", stderr(&out));
        }));
    };
    let hooks = Hooks {
        while_running: Some(&work),
        before_final_sends: Some(&cut),
    };
    let send_errors = [
        ("endpoint", "/VolumeDriver.Snapshot.Send"),
        ("outcome", "error"),
    ];
    let restore_errors = [
        ("endpoint", "/VolumeDriver.Snapshot.Restore"),
        ("outcome", "error"),
    ];
    let sends_failed = c.counter(n3, "buttervolume_requests_total", &send_errors);
    let restores_refused = c.counter(n1, "buttervolume_requests_total", &restore_errors);
    let outcome = c.deploy(&app, Some(place4), place5, Cli::V34, &hooks);
    cutter.take().unwrap().join().unwrap();
    let landed = c.assert_failed_move(step, &app, &outcome, n3, n1);
    // Node 1 could ask nobody (its link is still down): refused.
    let err = outcome[n1].as_ref().unwrap_err();
    assert!(
        err.contains(&format!(
            "restore of {data} refused: the newest snapshot here ({landed}) came from another node"
        )) && err.contains("could not be asked"),
        "{step}: {err}"
    );
    c.n.link(&c.names[n1], "up");
    // Link back: the handler's restore again (3.13 this time) is refused
    // because node 3, where that snapshot was made, holds a newer one.
    let err = c.restore(n1, Cli::V313, &data, None).unwrap_err();
    let left = c.record.borrow().snapshots[&(n3, data.clone())]
        .last()
        .unwrap()
        .clone();
    assert!(
        err.contains(&format!(
            "{} holds a newer state of {data} ({left})",
            c.ips[n3]
        )),
        "{step}: {err}"
    );
    assert!(
        c.log(n1).contains(&format!("restore of {data} refused")),
        "{step}: not in the log"
    );
    c.assert_placed(step, &app, at(n3, None), Cli::V313, false);
    let failed_5a = c.assert_send_failure_shown(step, &app, n3, n1);
    assert_eq!(
        c.counter(n3, "buttervolume_requests_total", &send_errors) - sends_failed,
        1.0,
        "{step}: the failed send"
    );
    // The handler's refused restore, then ours.
    assert_eq!(
        c.counter(n1, "buttervolume_requests_total", &restore_errors) - restores_refused,
        2.0,
        "{step}: the refused restores"
    );
    c.status_and_metrics(step, n1);
    eprintln!("step 5a done: {:.1} s", t0.elapsed().as_secs_f64());

    let step = "step 5b (the new master's disk full)";
    c.work(n3, &app, "nine");
    let filler = c.data(n1).join("filler");
    let work = || big("big2");
    let fill = || {
        // Leave less than the final send's 96 MiB on node 1 (statvfs
        // overestimates btrfs's free space: step down until it fits).
        let stat = nix::sys::statvfs::statvfs(&c.data(n1)).unwrap();
        let mut size = (stat.blocks_available() * stat.fragment_size()) as i64 - (40 << 20);
        let file = std::fs::File::create(&filler).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        while let Err(e) = nix::fcntl::fallocate(fd, nix::fcntl::FallocateFlags::empty(), 0, size) {
            assert_eq!(e, nix::errno::Errno::ENOSPC, "filling node 1");
            size -= 16 << 20;
        }
    };
    let hooks = Hooks {
        while_running: Some(&work),
        before_final_sends: Some(&fill),
    };
    let sends_failed = c.counter(n3, "buttervolume_requests_total", &send_errors);
    let receive_failures = c.counter(n1, "buttervolume_peer_receive_failures_total", &[]);
    let peer_log_path = c.data(n1).join("state/ssh-command.log");
    let outcome = c.deploy(&app, Some(place4), place5, Cli::V313, &hooks);
    std::fs::remove_file(&filler).unwrap();
    buttervolume::btrfs::sync(&c.data(n1)).unwrap();
    c.assert_failed_move(step, &app, &outcome, n3, n1);
    let left = c.record.borrow().snapshots[&(n3, data.clone())]
        .last()
        .unwrap()
        .clone();
    let err = outcome[n1].as_ref().unwrap_err();
    assert!(
        err.contains(&format!(
            "{} holds a newer state of {data} ({left})",
            c.ips[n3]
        )),
        "{step}: {err}"
    );
    c.assert_placed(step, &app, at(n3, None), Cli::V34, false);
    let failed_5b = c.assert_send_failure_shown(step, &app, n3, n1);
    assert!(failed_5b >= failed_5a, "{step}: {failed_5b} < {failed_5a}");
    assert_eq!(
        c.counter(n3, "buttervolume_requests_total", &send_errors) - sends_failed,
        1.0,
        "{step}: the failed send"
    );
    // The stream that did not fit, from node 1's forced command (its log
    // keeps room allocated for the lines a full disk would refuse). That
    // process logs it as it ends, which may be after the sender gave up.
    let counted =
        || c.counter(n1, "buttervolume_peer_receive_failures_total", &[]) > receive_failures;
    wait_until(
        Lazy(|| {
            format!(
                "{step}: node 1 to count the receive that failed; its forced command's log ends with:\n{}",
                testkit::dockerd::tail(&peer_log_path, 5)
            )
        }),
        60,
        counted,
    );
    c.status_and_metrics(step, n1);
    eprintln!("step 5b done: {:.1} s", t0.elapsed().as_secs_f64());

    // 5c) The same move once nothing fails: node 1 gets exactly what node
    // 3 stopped with, the two big files included; nothing was lost.
    let step = "step 5c (the move again)";
    c.work(n3, &app, "ten");
    all_ok(
        step,
        &c.deploy(&app, Some(place4), place5, Cli::V34, &Hooks::default()),
    );
    c.assert_moved_intact(step, &app);
    c.assert_final_sent(step, &app, n3, n1);
    c.assert_placement(step, &app, place5, Cli::V313);
    let log = read(&c, n1, &data, "log");
    for line in ["big", "nine", "big2", "ten"] {
        assert!(log.lines().any(|l| l == line), "{step}: {line} lost: {log}");
    }
    // Nothing failing any more: the new master shows no failed send, the
    // old master no volume (`down -v`).
    let (st, _) = c.status_and_metrics(step, n1);
    assert!(
        st.problems
            .iter()
            .all(|p| p.kind != ProblemKind::SendFailed),
        "{step}: {:?}",
        st.problems
    );
    let (st, _) = c.status_and_metrics(step, n3);
    assert!(st.volumes.iter().all(|v| v.name != data), "{step}");
    eprintln!("step 5c done: {:.1} s", t0.elapsed().as_secs_f64());

    // The handler schedules replicate only after `up`: no first Mount of
    // the scenario had an active replicate line, so follow never restored.
    for k in 0..3 {
        assert!(!c.log(k).contains("followed: restored"), "node {}", k + 1);
    }
    assert_eq!(
        c.forms_not_run_through_both(),
        vec![],
        "handler commands not run through both CLIs"
    );

    c.compose(n1, &app, &["down"]).unwrap();
    for k in 0..3 {
        c.n.docker_stop(&c.names[k]);
    }
    eprintln!("total: {:.1} s", t0.elapsed().as_secs_f64());
}
