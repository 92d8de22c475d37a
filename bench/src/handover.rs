//! `handover`: issue 13's three figures in one run, on two pairs of
//! throw-away nodes (`testkit::pairs`, no dockerd: the app's Mount and
//! Unmount are sent to the daemons' sockets, its writes are CHANGE_MIB
//! overwritten in place at a new offset of its DATA_MIB file, no sync):
//!
//! 1. **handover**, volume `vol` (no replicate line) replicated once to
//!    node 2; per repetition the app runs (Mount) and writes, the first
//!    `Handover` presyncs, the app writes again and stops (Unmount), the
//!    second `Handover` sends the final state (its `CriticalSeconds` and
//!    `Bytes`), then `Snapshot.Restore` of it on node 2 (what the app's
//!    first Mount there does; the backup it makes of node 2's previous copy
//!    is removed, untimed: left there, it is a state node 1 never saw and
//!    the next send would be refused). The reference, same writes, moved as
//!    its users script it with its CLI: `snapshot` + `send` while the app
//!    runs; after the stop `snapshot` + `send` + `restore` (its
//!    downtime-critical phase).
//! 2. **follow, mount-time pull**, volume `fol` with an active
//!    `replicate:<peer>` line on both nodes: node 1 gets CHANGE_MIB more
//!    and a snapshot node 2 lacks; node 2's first Mount asks, pulls the
//!    delta and restores it (checked: node 1 sent at least the change
//!    during it, and node 2's file is node 1's).
//! 3. **follow, unmount-time push**: the app writes CHANGE_MIB on node 2,
//!    its last Unmount snapshots and sends them; node 1 then mounts and
//!    unmounts (untimed) so its next state is built on node 2's.
//!
//! One warm-up repetition first (not counted). Times are the requests' own
//! (ours, measured around the request) or the reference's CLI calls (its
//! users' cost, Python start-up included); bytes are the replies' `Bytes`
//! and the sending node's eth0 tx during the call. Every move is checked:
//! the new node's file holds the old node's bytes.

use std::collections::HashMap;
use std::time::Duration;

use buttervolume::api::{
    path, CreateRequest, HandoverReply, MountRequest, NameRequest, PeerVolumeRequest, RestoreReply,
    RestoreRequest, SnapshotReply, SnapshotRequest,
};
use clap::Args;
use serde_json::Value;
use testkit::nodes::Nodes;
use testkit::pairs::Program;

use crate::app_data;
use crate::report::{timed, Samples, Table};

#[derive(Args)]
pub struct Options {
    #[command(flatten)]
    sizes: crate::app_data::Sizes,
    /// What the app writes each time.
    #[arg(long, default_value_t = 10)]
    change_mib: usize,
    /// Each node's loop image.
    #[arg(long, default_value = "5G")]
    image_size: String,
}

const YEARLY: &str = "cron:0 0 1 1 *";

/// One node pair and what is read of it.
struct Pair {
    nodes: Nodes,
    n: [String; 2],
    ip: [String; 2],
    pid: [u32; 2],
}

impl Pair {
    fn new(nodes: Nodes) -> Pair {
        let n = [nodes.name(1), nodes.name(2)];
        let ip = [nodes.ip(&n[0]), nodes.ip(&n[1])];
        let pid = [nodes.daemon_pid(&n[0]), nodes.daemon_pid(&n[1])];
        Pair { nodes, n, ip, pid }
    }

    fn tx(&self, k: usize) -> u64 {
        self.nodes.tx_bytes(self.pid[k])
    }

    /// A typed request to node `k`: its reply and how long it took.
    fn call<R: serde::de::DeserializeOwned>(
        &self,
        k: usize,
        path: &str,
        request: &impl serde::Serialize,
    ) -> (R, f64) {
        let (reply, took) = timed(|| self.nodes.call(&self.n[k], path, request));
        (reply, took.as_secs_f64())
    }

    fn mount(&self, k: usize, volume: &str, endpoint: &str) -> f64 {
        let request = MountRequest {
            name: volume.into(),
            id: Some("app".into()),
        };
        self.call::<Value>(k, endpoint, &request).1
    }

    fn file(&self, k: usize, volume: &str) -> std::path::PathBuf {
        self.nodes.volume_dir(&self.n[k], volume).join("big")
    }

    /// The reference CLI on node `k`, timed.
    fn cli(&self, k: usize, args: &[&str]) -> (String, f64) {
        let (out, took) = timed(|| self.nodes.reference_cli(&self.n[k], args));
        (out, took.as_secs_f64())
    }
}

/// The figures of one repetition.
#[derive(Default)]
struct Rep {
    presync: f64,
    presync_tx: u64,
    critical: f64,
    final_request: f64,
    final_bytes: u64,
    final_tx: u64,
    restore: f64,
    ref_presync: f64,
    ref_presync_tx: u64,
    ref_snapshot: f64,
    ref_send: f64,
    ref_restore: f64,
    ref_tx: u64,
    pull: f64,
    pull_tx: u64,
    push: f64,
    push_tx: u64,
}

impl Rep {
    fn ref_critical(&self) -> f64 {
        self.ref_snapshot + self.ref_send + self.ref_restore
    }
}

pub fn run(o: &Options) -> Table {
    assert!(
        o.sizes.data_mib > 4 * o.change_mib,
        "data-mib must exceed 4 * change-mib"
    );
    let ours = Pair::new(Nodes::pair_of("bho", &o.image_size, Program::Ours, &[]));
    let reference = Pair::new(Nodes::pair_of(
        "bhr",
        &o.image_size,
        Program::Reference,
        &[],
    ));
    println!(
        "reps {} (+1 warm-up) data {} MiB change {} MiB; images {} (preallocated, nodiscard)",
        o.sizes.reps, o.sizes.data_mib, o.change_mib, o.image_size
    );
    let create = |p: &Pair, k: usize, name: &str, peer: Option<usize>| {
        let opts: Option<HashMap<String, String>> =
            peer.map(|q| HashMap::from([(format!("replicate:{}", p.ip[q]), YEARLY.to_string())]));
        let request = CreateRequest {
            name: name.into(),
            opts,
        };
        p.call::<Value>(k, path::CREATE, &request);
    };
    create(&ours, 0, "vol", None);
    create(&ours, 0, "fol", Some(1));
    create(&ours, 1, "fol", Some(0));
    create(&reference, 0, "vol", None);
    for (p, volume) in [(&ours, "vol"), (&ours, "fol"), (&reference, "vol")] {
        app_data::write_at(&p.file(0, volume), 0, o.sizes.data_mib, 1);
    }
    testkit::run("sync", &[]);

    let mut initial = Vec::new();
    for volume in ["vol", "fol"] {
        let request = PeerVolumeRequest {
            name: volume.into(),
            host: ours.ip[1].clone(),
        };
        let (_, took) = ours.call::<SnapshotReply>(0, path::REPLICATE, &request);
        initial.push(format!("ours, {volume}: {took:.2} s"));
    }
    let (snapshot, a) = reference.cli(0, &["snapshot", "vol"]);
    let (_, b) = reference.cli(0, &["send", &reference.ip[1], &snapshot]);
    initial.push(format!("ref, vol: {:.2} s", a + b));

    let mut k = 0;
    let mut reps = Vec::new();
    for r in 0..=o.sizes.reps {
        let note = if r == 0 { " (warm-up)" } else { "" };
        eprintln!("repetition {r}{note}");
        let mut rep = Rep::default();
        handover(o, &ours, &mut k, &mut rep);
        handover_reference(o, &reference, k, &mut rep);
        follow(o, &ours, &mut k, &mut rep);
        reps.push(rep);
    }
    report(o, &reps, &initial)
}

/// Ours: one handover node 1 -> node 2, then the restore there.
fn handover(o: &Options, p: &Pair, k: &mut usize, rep: &mut Rep) {
    let write = |k: usize| {
        let offset = app_data::offset(k, o.sizes.data_mib, o.change_mib);
        app_data::write_at(&p.file(0, "vol"), offset, o.change_mib, k as u64 + 2);
    };
    let request = PeerVolumeRequest {
        name: "vol".into(),
        host: p.ip[1].clone(),
    };
    p.mount(0, "vol", path::MOUNT);
    *k += 1;
    write(*k);
    let tx0 = p.tx(0);
    let (reply, took) = p.call::<HandoverReply>(0, path::HANDOVER, &request);
    assert_eq!(
        reply.phase, "presynced",
        "the first Handover call: {reply:?}"
    );
    (rep.presync, rep.presync_tx) = (took, p.tx(0) - tx0);
    *k += 1;
    write(*k);
    p.mount(0, "vol", path::UNMOUNT);
    let tx0 = p.tx(0);
    let (reply, took) = p.call::<HandoverReply>(0, path::HANDOVER, &request);
    assert_eq!(
        reply.phase, "handed-over",
        "the second Handover call: {reply:?}"
    );
    rep.final_tx = p.tx(0) - tx0;
    rep.final_request = took;
    rep.critical = reply
        .critical_seconds
        .expect("a final call's CriticalSeconds");
    rep.final_bytes = reply.bytes;
    let restore = RestoreRequest {
        name: reply.snapshot,
        target: None,
        force: false,
    };
    let (restored, took) = p.call::<RestoreReply>(1, path::SNAPSHOT_RESTORE, &restore);
    rep.restore = took;
    if let Some(backup) = restored.volume_backup {
        p.call::<Value>(1, path::SNAPSHOT_REMOVE, &NameRequest { name: backup });
    }
    assert!(
        app_data::same(&p.file(0, "vol"), &p.file(1, "vol")),
        "ours: node 2 does not hold what the app stopped with on node 1"
    );
}

/// The reference users' move, with the same writes as ours.
fn handover_reference(o: &Options, p: &Pair, k: usize, rep: &mut Rep) {
    let write = |k: usize| {
        let offset = app_data::offset(k, o.sizes.data_mib, o.change_mib);
        app_data::write_at(&p.file(0, "vol"), offset, o.change_mib, k as u64 + 2);
    };
    write(k);
    let tx0 = p.tx(0);
    let (snapshot, a) = p.cli(0, &["snapshot", "vol"]);
    let (_, b) = p.cli(0, &["send", &p.ip[1], &snapshot]);
    (rep.ref_presync, rep.ref_presync_tx) = (a + b, p.tx(0) - tx0);
    write(k + 1);
    // (stop: the reference's Unmount does nothing)
    let tx0 = p.tx(0);
    let (snapshot, a) = p.cli(0, &["snapshot", "vol"]);
    let (_, b) = p.cli(0, &["send", &p.ip[1], &snapshot]);
    rep.ref_tx = p.tx(0) - tx0;
    let (_, c) = p.cli(1, &["restore", &snapshot]);
    (rep.ref_snapshot, rep.ref_send, rep.ref_restore) = (a, b, c);
    assert!(
        app_data::same(&p.file(0, "vol"), &p.file(1, "vol")),
        "reference: node 2 does not hold what the app stopped with on node 1"
    );
}

/// Ours: node 2's Mount pulls node 1's newer state, its Unmount pushes.
fn follow(o: &Options, p: &Pair, k: &mut usize, rep: &mut Rep) {
    let write = |node: usize, k: usize| {
        let offset = app_data::offset(k, o.sizes.data_mib, o.change_mib);
        app_data::write_at(&p.file(node, "fol"), offset, o.change_mib, k as u64 + 2);
    };
    *k += 1;
    write(0, *k);
    let request = SnapshotRequest {
        name: "fol".into(),
        if_changed: false,
    };
    p.call::<SnapshotReply>(0, path::SNAPSHOT, &request);
    let tx0 = p.tx(0);
    rep.pull = p.mount(1, "fol", path::MOUNT);
    rep.pull_tx = p.tx(0) - tx0;
    assert!(
        rep.pull_tx >= (o.change_mib << 20) as u64,
        "node 2's Mount did not pull ({} bytes from node 1)",
        rep.pull_tx
    );
    assert!(
        app_data::same(&p.file(0, "fol"), &p.file(1, "fol")),
        "node 2's Mount did not bring node 1's state"
    );
    *k += 1;
    write(1, *k);
    let tx0 = p.tx(1);
    rep.push = p.mount(1, "fol", path::UNMOUNT);
    rep.push_tx = p.tx(1) - tx0;
    p.mount(0, "fol", path::MOUNT);
    p.mount(0, "fol", path::UNMOUNT);
    assert!(
        app_data::same(&p.file(0, "fol"), &p.file(1, "fol")),
        "node 1's Mount did not bring node 2's pushed state"
    );
}

fn s(v: f64) -> String {
    if v >= 0.0995 {
        format!("{v:.2} s")
    } else {
        format!("{:.0} ms", v * 1e3)
    }
}

/// Bytes in millions: `med` keeps them as seconds.
fn bytes(b: u64) -> f64 {
    b as f64 / 1e6
}

fn as_mib(v: f64) -> String {
    mib(v * 1e6)
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
}

/// median (min..max) over the counted repetitions, `f` formatting.
fn med(reps: &[Rep], pick: fn(&Rep) -> f64, f: fn(f64) -> String) -> String {
    // Samples keeps durations: values go through it as seconds.
    let v = Samples(
        reps[1..]
            .iter()
            .map(|r| Duration::from_secs_f64(pick(r).max(0.0)))
            .collect(),
    );
    let x = |ms: f64| f(ms / 1e3);
    format!("{} ({}..{})", x(v.p50()), x(v.pct(0.0)), x(v.max()))
}

fn report(o: &Options, reps: &[Rep], initial: &[String]) -> Table {
    println!("\nPer repetition (r0 = warm-up):\n");
    let mut per = Table::new(&[
        "r",
        "ours critical",
        "ours final request",
        "ours final bytes",
        "ours restore",
        "ref snapshot / send / restore = critical",
        "ref final tx",
        "pull Mount",
        "pull tx",
        "push Unmount",
        "push tx",
    ]);
    for (r, x) in reps.iter().enumerate() {
        per.row(vec![
            r.to_string(),
            s(x.critical),
            s(x.final_request),
            mib(x.final_bytes as f64),
            s(x.restore),
            format!(
                "{} / {} / {} = {}",
                s(x.ref_snapshot),
                s(x.ref_send),
                s(x.ref_restore),
                s(x.ref_critical())
            ),
            mib(x.ref_tx as f64),
            s(x.pull),
            mib(x.pull_tx as f64),
            s(x.push),
            mib(x.push_tx as f64),
        ]);
    }
    print!("{per}");
    println!("\nInitial replication: {}.", initial.join("; "));
    println!(
        "\nMedian (min..max) of {} repetitions (a warm-up one before, not counted).\n",
        reps.len() - 1
    );
    let change = o.change_mib;
    let mut t = Table::new(&["figure", "ours", "target", "reference 3.13 + script"]);
    t.row(vec![
        "**handover, downtime-critical phase** (ours: the final call's CriticalSeconds; ref: `snapshot` + `send` + `restore` after the stop)".into(),
        med(reps, |r| r.critical, s),
        "< 0.5 s".into(),
        med(reps, Rep::ref_critical, s),
    ]);
    t.row(vec![
        "of which: the final `Handover` request (ours) / the `snapshot` + `send` CLI calls (ref)"
            .into(),
        med(reps, |r| r.final_request, s),
        String::new(),
        format!(
            "{} + {}",
            med(reps, |r| r.ref_snapshot, s),
            med(reps, |r| r.ref_send, s)
        ),
    ]);
    t.row(vec![
        "restore on the new node (ours: `Snapshot.Restore` request, outside the critical phase: the app's first Mount does it; ref: `restore` CLI call, counted above)".into(),
        med(reps, |r| r.restore, s),
        String::new(),
        med(reps, |r| r.ref_restore, s),
    ]);
    t.row(vec![
        "bytes moved by the final send (ours: the reply's Bytes / old node's eth0 tx; ref: eth0 tx)".into(),
        format!(
            "{} / {}",
            med(reps, |r| bytes(r.final_bytes), as_mib),
            med(reps, |r| bytes(r.final_tx), as_mib)
        ),
        format!("{change} MiB written"),
        med(reps, |r| bytes(r.ref_tx), as_mib),
    ]);
    t.row(vec![
        "presync while the app runs (ours: first `Handover` call; ref: `snapshot` + `send`), not in the downtime".into(),
        format!("{}, {} tx", med(reps, |r| r.presync, s), med(reps, |r| bytes(r.presync_tx), as_mib)),
        String::new(),
        format!("{}, {} tx", med(reps, |r| r.ref_presync, s), med(reps, |r| bytes(r.ref_presync_tx), as_mib)),
    ]);
    t.row(vec![
        format!("**follow, mount-time pull**: first `Mount` on the new node, peer holds {change} MiB more (ask, pull, restore)"),
        med(reps, |r| r.pull, s),
        "< 1 s".into(),
        "-".into(),
    ]);
    t.row(vec![
        "of which bytes (peer's eth0 tx during the Mount)".into(),
        med(reps, |r| bytes(r.pull_tx), as_mib),
        String::new(),
        String::new(),
    ]);
    t.row(vec![
        format!("**follow, unmount-time push**: last `Unmount` after the app wrote {change} MiB (snapshot + send)"),
        med(reps, |r| r.push, s),
        "< 0.5 s".into(),
        "-".into(),
    ]);
    t.row(vec![
        "of which bytes (old node's eth0 tx during the Unmount)".into(),
        med(reps, |r| bytes(r.push_tx), as_mib),
        String::new(),
        String::new(),
    ]);
    t
}
