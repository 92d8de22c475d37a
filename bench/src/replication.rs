//! `replication`: `Snapshot.Send` of our daemon vs the reference
//! buttervolume 3.13, side by side in one run, on throw-away nodes:
//!
//! - pair A, bvo1 -> bvo2: our daemon on both, bvo1's key on bvo2 with our
//!   forced command `<binary> ssh-command`;
//! - pair B, bvr1 -> bvr2: the reference daemon on both, a plain key (as
//!   reference nodes are set up).
//!
//! Measured REPS times each, medians reported, ours / reference / baselines
//! interleaved so all see the same machine state:
//!
//! 1. full send: `Snapshot.Send` of a snapshot of a volume holding DATA_MIB
//!    MiB of random data (the same bytes on both senders), request to reply
//!    (both reply once the peer's receive has finished); the peer's copy
//!    and the marker are deleted and synced between repetitions. Baselines
//!    on the same nodes and snapshot: `btrfs send | btrfs receive` inside
//!    bvo1 (raw local), `btrfs send | ssh -p 1122 bvr2 "btrfs receive"`
//!    inside bvr1 with ssh's default cipher and with aes128-gcm.
//! 2. incremental: CHANGE_MIB MiB overwritten inside the big file (same
//!    bytes for both), synced, then `Snapshot` + `Snapshot.Send` timed.
//!
//! Bytes on the wire: the sender's eth0 transmit counter. Each measurement
//! also records the machine's busy and stolen CPU seconds. Warm caches;
//! every measurement starts after a `sync`; node images preallocated.

use std::io::{Seek, SeekFrom};

use clap::Args;

use crate::app_data;
use crate::cpu::Cpu;
use crate::pair::{exec_ok, summary_figures, Pair, Program};
use crate::report::{timed, Samples, Table};

#[derive(Args)]
pub struct Options {
    #[command(flatten)]
    sizes: crate::app_data::Sizes,
    #[arg(long, default_value_t = 10)]
    change_mib: usize,
    /// Each node's loop image (preallocated).
    #[arg(long, default_value = "4G")]
    image_size: String,
}

const SNAPS: &str = "/var/lib/buttervolume/snapshots";
const RAW: &str = "/var/lib/buttervolume/rawrecv";

/// One measurement.
#[derive(Default, Clone)]
struct Run {
    who: &'static str,
    rep: usize,
    secs: f64,
    cpu: Cpu,
    tx: Option<u64>,
    snapshot_s: f64,
    send_s: f64,
    summary_mib: Option<f64>,
}

const FULL: [(&str, &str); 5] = [
    ("ours", "ours"),
    ("ref", "reference 3.13"),
    ("raw_local", "raw local send\\|receive"),
    ("raw_ssh", "raw send\\|ssh receive (ssh default cipher)"),
    ("raw_ssh_gcm", "raw send\\|ssh -c aes128-gcm receive"),
];

pub fn run(o: &Options) -> Table {
    println!(
        "ours: {}; reference: {}",
        testkit::bin(),
        Program::Reference.path()
    );
    let ours = Pair::up("bvo", &o.image_size, Program::Ours, &[]);
    let refs = Pair::up("bvr", &o.image_size, Program::Reference, &[]);
    let pairs = [("ours", &ours), ("ref", &refs)];
    eprintln!(
        "writing {} MiB of random data on both senders",
        o.sizes.data_mib
    );
    let mut base = Vec::new();
    for (_, p) in pairs {
        p.volume_with_data(&p.a, "big", o.sizes.data_mib);
        base.push(p.snapshot(&p.a, "big"));
    }
    std::fs::create_dir_all(ours.data(&ours.a, "rawrecv")).unwrap();
    std::fs::create_dir_all(refs.data(&refs.b, "rawrecv")).unwrap();

    let mut runs: Vec<Run> = Vec::new();
    for rep in 1..=o.sizes.reps {
        for (k, (who, p)) in pairs.iter().enumerate() {
            let snap = &base[k];
            if rep > 1 {
                p.delete(&p.b, &[format!("{SNAPS}/{snap}")]);
                p.delete(&p.a, &[format!("{SNAPS}/{snap}@{}", p.ip)]);
            }
            exec_ok(&p.n, &p.a, &["sync"]);
            eprintln!("full send {rep}/{}: {who}", o.sizes.reps);
            let (tx0, cpu) = (p.tx_bytes(&p.a), Cpu::now());
            let (_, took) = timed(|| p.send(&p.a, snap, &p.ip));
            let cpu = cpu.since();
            assert!(p.data(&p.b, &format!("snapshots/{snap}")).exists());
            runs.push(Run {
                who,
                rep,
                secs: took.as_secs_f64(),
                cpu,
                tx: Some(p.tx_bytes(&p.a) - tx0),
                ..Run::default()
            });
        }
        let source = format!("{SNAPS}/{}", base[0]);
        exec_ok(&ours.n, &ours.a, &["sync"]);
        let cpu = Cpu::now();
        let took = ours.pipeline(
            (&ours.a, &["btrfs", "-q", "send", &source]),
            (&ours.a, &["btrfs", "-q", "receive", RAW]),
        );
        runs.push(Run {
            who: "raw_local",
            rep,
            secs: took.as_secs_f64(),
            cpu: cpu.since(),
            ..Run::default()
        });
        ours.delete(&ours.a, &[format!("{RAW}/{}", base[0])]);
        let source = format!("{SNAPS}/{}", base[1]);
        let remote = format!("btrfs -q receive {RAW}");
        for (who, cipher) in [
            ("raw_ssh", None),
            ("raw_ssh_gcm", Some("aes128-gcm@openssh.com")),
        ] {
            let mut ssh = vec!["ssh", "-p", "1122"];
            if let Some(c) = cipher {
                ssh.extend(["-c", c]);
            }
            ssh.extend([refs.ip.as_str(), remote.as_str()]);
            exec_ok(&refs.n, &refs.a, &["sync"]);
            let (tx0, cpu) = (refs.tx_bytes(&refs.a), Cpu::now());
            let took = refs.pipeline(
                (&refs.a, &["btrfs", "-q", "send", &source]),
                (&refs.a, &ssh),
            );
            runs.push(Run {
                who,
                rep,
                secs: took.as_secs_f64(),
                cpu: cpu.since(),
                tx: Some(refs.tx_bytes(&refs.a) - tx0),
                ..Run::default()
            });
            refs.delete(&refs.b, &[format!("{RAW}/{}", base[1])]);
        }
    }

    // Each repetition overwrites CHANGE_MIB MiB at a new offset and sends
    // incrementally from the previous snapshot.
    for rep in 1..=o.sizes.reps {
        for (who, p) in pairs {
            let file = p.data(&p.a, "volumes/big/data");
            let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
            f.seek(SeekFrom::Start((rep as u64 * 100) << 20)).unwrap();
            app_data::fill(&mut f, o.change_mib << 20, 100 + rep as u64);
            drop(f);
            exec_ok(&p.n, &p.a, &["sync"]);
            eprintln!("incremental {rep}/{}: {who}", o.sizes.reps);
            let (tx0, cpu) = (p.tx_bytes(&p.a), Cpu::now());
            let ((snap, snapshot_s, summary, send_s), took) = timed(|| {
                let (snap, snapshot_s) = timed(|| p.snapshot(&p.a, "big"));
                let (summary, send_s) = timed(|| p.send(&p.a, &snap, &p.ip));
                (snap, snapshot_s, summary, send_s)
            });
            let cpu = cpu.since();
            assert!(p.data(&p.b, &format!("snapshots/{snap}")).exists());
            runs.push(Run {
                who: if who == "ours" {
                    "incr_ours"
                } else {
                    "incr_ref"
                },
                rep,
                secs: took.as_secs_f64(),
                cpu,
                tx: Some(p.tx_bytes(&p.a) - tx0),
                snapshot_s: snapshot_s.as_secs_f64(),
                send_s: send_s.as_secs_f64(),
                summary_mib: summary_figures(&summary).map(|f| f.0),
            });
        }
    }
    tables(o, &runs)
}

fn of<'a>(runs: &'a [Run], who: &str) -> Vec<&'a Run> {
    runs.iter().filter(|r| r.who == who).collect()
}

fn median(v: impl IntoIterator<Item = f64>) -> f64 {
    let samples = Samples(
        v.into_iter()
            .map(std::time::Duration::from_secs_f64)
            .collect(),
    );
    samples.p50() / 1e3
}

fn spread(rs: &[&Run]) -> String {
    let v: Vec<f64> = rs.iter().map(|r| r.secs).collect();
    let (lo, hi) = v
        .iter()
        .fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
    format!("{:.2} s ({lo:.2}..{hi:.2})", median(v.iter().copied()))
}

fn tables(o: &Options, runs: &[Run]) -> Table {
    let raw = of(runs, "raw_local");
    let raw_med = median(raw.iter().map(|r| r.secs));
    println!(
        "Full send, {} MiB of random data (median of {}, min..max):\n",
        o.sizes.data_mib, o.sizes.reps
    );
    let mut full = Table::new(&[
        "",
        "time",
        "MiB/s",
        "% of raw local throughput (medians)",
        "% of raw local (median of per-repetition ratios)",
        "CPU-s used, steal excluded",
        "sender tx bytes",
    ]);
    for (who, label) in FULL {
        let rs = of(runs, who);
        let t = median(rs.iter().map(|r| r.secs));
        let ratios = rs
            .iter()
            .filter_map(|r| raw.iter().find(|x| x.rep == r.rep).map(|x| x.secs / r.secs));
        let tx = rs
            .iter()
            .filter_map(|r| r.tx)
            .map(|b| b as f64)
            .collect::<Vec<_>>();
        full.row(vec![
            label.into(),
            spread(&rs),
            format!("{:.0}", o.sizes.data_mib as f64 / t),
            format!("{:.0}%", 100.0 * raw_med / t),
            format!("{:.0}%", 100.0 * median(ratios)),
            format!("{:.1}", median(rs.iter().map(|r| r.cpu.busy))),
            match tx.is_empty() {
                true => "-".into(),
                false => format!("{:.0} MiB", median(tx) / 1048576.0),
            },
        ]);
    }
    print!("{full}");
    let steal: f64 = runs.iter().map(|r| r.cpu.steal).sum();
    let busy: f64 = runs.iter().map(|r| r.cpu.busy + r.cpu.steal).sum();
    println!(
        "\nCPU time stolen by the hypervisor during the measured windows: {steal:.1} s of {busy:.1} s busy ({:.0}%).\n",
        100.0 * steal / busy.max(1e-9)
    );
    println!(
        "Incremental: {} MiB overwritten in the big file, then Snapshot + Snapshot.Send (median of {}, min..max):\n",
        o.change_mib, o.sizes.reps
    );
    let (ours, refs) = (of(runs, "incr_ours"), of(runs, "incr_ref"));
    let mut t = Table::new(&["", "ours", "reference 3.13", "reference / ours"]);
    let med = |rs: &[&Run], f: fn(&Run) -> Option<f64>| {
        let v: Vec<f64> = rs.iter().filter_map(|r| f(r)).collect();
        (!v.is_empty()).then(|| median(v))
    };
    let mut line =
        |label: String, f: fn(&Run) -> Option<f64>, show: &dyn Fn(f64) -> String, ratio: bool| {
            let (a, b) = (med(&ours, f), med(&refs, f));
            let cell = |v: Option<f64>| v.map(show).unwrap_or("n/a".into());
            let q = match (a, b) {
                (Some(a), Some(b)) if ratio && a > 0.0 => format!("{:.1}x", b / a),
                _ => String::new(),
            };
            t.row(vec![label, cell(a), cell(b), q]);
        };
    let change = (o.change_mib << 20) as f64;
    line(
        "Snapshot + Send until landed".into(),
        |r| Some(r.secs),
        &|v| format!("{v:.2} s"),
        true,
    );
    line(
        "of which Snapshot".into(),
        |r| Some(r.snapshot_s),
        &|v| format!("{:.1} ms", v * 1e3),
        true,
    );
    line(
        "of which Send".into(),
        |r| Some(r.send_s),
        &|v| format!("{v:.3} s"),
        true,
    );
    line(
        "sender eth0 tx bytes".into(),
        |r| r.tx.map(|b| b as f64),
        &|v| format!("{:.2} MiB", v / 1048576.0),
        false,
    );
    line(
        format!("tx bytes / {} MiB changed", o.change_mib),
        |r| r.tx.map(|b| b as f64),
        &|v| format!("{:.2}x", v / change),
        false,
    );
    line(
        "stream size in the reply's Summary".into(),
        |r| r.summary_mib,
        &|v| format!("{v:.1} MiB"),
        false,
    );
    t.row(vec![
        "Snapshot + Send, median (min..max)".into(),
        spread(&ours),
        spread(&refs),
        String::new(),
    ]);
    t
}
