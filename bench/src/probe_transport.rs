//! `probe-transport`: the SSH transports a full send can take, side by
//! side in one run on the same two nodes (bvt1 -> bvt2, our forced command
//! on bvt2), the same snapshot, the same receiving forced command:
//!
//! - openssh: `btrfs send S | ssh -c aes128-gcm@openssh.com bvt2
//!   "buttervolume receive"` inside bvt1: OpenSSH's client fed by the btrfs
//!   CLI, what btrbk users get (the target);
//! - ours: `Snapshot.Send` with `SEND_TRANSPORT=auto` (the default: the
//!   send ioctl's pipe spliced into OpenSSH's `ssh`);
//! - libssh2: `Snapshot.Send` with `SEND_TRANSPORT=libssh2` (the stream
//!   through the in-process libssh2 session).
//!
//! REPS repetitions, the candidates alternating inside each (bvt1's daemon
//! restarted with the candidate's transport before its run; the copy on
//! bvt2 and the marker deleted and synced before each). Per run: wall time
//! request to reply, the machine's busy CPU (steal excluded: sender, ssh,
//! sshd, receive) and the stolen seconds. Then CHANGE_MIB MiB overwritten
//! and Snapshot + Send with the default transport, REPS times: the Send's
//! own time from its summary, and the whole from here.

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
    #[arg(long, default_value = "4G")]
    image_size: String,
}

const SNAPS: &str = "/var/lib/buttervolume/snapshots";

const CANDIDATES: [(&str, &str); 3] = [
    ("openssh", "OpenSSH `btrfs send \\| ssh -c aes128-gcm`"),
    ("auto", "ours, SEND_TRANSPORT=auto (spliced into ssh)"),
    ("libssh2", "ours, SEND_TRANSPORT=libssh2"),
];

fn secs(v: &[f64]) -> Samples {
    Samples(
        v.iter()
            .map(|s| std::time::Duration::from_secs_f64(*s))
            .collect(),
    )
}

pub fn run(o: &Options) -> Table {
    let p = Pair::up("bvt", &o.image_size, Program::Ours, &[]);
    let (a, b, ip) = (p.a.clone(), p.b.clone(), p.ip.clone());
    eprintln!("writing {} MiB of random data", o.sizes.data_mib);
    p.volume_with_data(&a, "big", o.sizes.data_mib);
    let snap = p.snapshot(&a, "big");
    let source = format!("{SNAPS}/{snap}");
    let ssh = [
        "ssh",
        "-F",
        "/dev/null",
        "-p",
        "1122",
        "-i",
        "/root/.ssh/id_ed25519",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-c",
        "aes128-gcm@openssh.com",
        "-o",
        "UserKnownHostsFile=/root/.ssh/known_hosts",
        &ip,
        "buttervolume receive",
    ];
    // (wall seconds, CPU) per candidate, in repetition order.
    let mut runs: Vec<Vec<(f64, Cpu)>> = vec![Vec::new(); CANDIDATES.len()];
    for rep in 1..=o.sizes.reps {
        eprintln!("repetition {rep}/{}", o.sizes.reps);
        for (k, (who, _)) in CANDIDATES.iter().enumerate() {
            if *who != "openssh" {
                let transport = format!("BUTTERVOLUME_SEND_TRANSPORT={who}");
                p.restart(&a, Program::Ours, &[&transport]);
            }
            p.delete(&b, &[format!("{SNAPS}/{snap}")]);
            p.delete(&a, &[format!("{SNAPS}/{snap}@{ip}")]);
            exec_ok(&p.n, &a, &["sync"]);
            let cpu = Cpu::now();
            let took = match *who {
                "openssh" => p.pipeline((&a, &["btrfs", "-q", "send", &source]), (&a, &ssh)),
                _ => timed(|| p.send(&a, &snap, &ip)).1,
            };
            runs[k].push((took.as_secs_f64(), cpu.since()));
            assert!(
                p.data(&b, &format!("snapshots/{snap}")).exists(),
                "{who}: not landed"
            );
        }
    }
    p.restart(&a, Program::Ours, &["BUTTERVOLUME_SEND_TRANSPORT=auto"]);

    eprintln!(
        "incremental: {} MiB changed, {} times",
        o.change_mib, o.sizes.reps
    );
    let (mut whole, mut own) = (Vec::new(), Vec::new());
    for rep in 1..=o.sizes.reps {
        let file = p.data(&a, "volumes/big/data");
        let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
        f.seek(SeekFrom::Start((rep as u64 * 100) << 20)).unwrap();
        app_data::fill(&mut f, o.change_mib << 20, 7);
        drop(f);
        exec_ok(&p.n, &a, &["sync"]);
        let (summary, took) = timed(|| {
            let s = p.snapshot(&a, "big");
            p.send(&a, &s, &ip)
        });
        assert!(
            summary.contains("incrementally"),
            "not incremental: {summary}"
        );
        whole.push(took.as_secs_f64());
        own.push(summary_figures(&summary).expect("a summary with figures").1);
    }

    let gib = o.sizes.data_mib as f64 / 1024.0;
    let base: Vec<f64> = runs[0].iter().map(|r| r.0).collect();
    let (base_t, base_cpu) = (
        secs(&base).p50() / 1e3,
        secs(&runs[0].iter().map(|r| r.1.busy).collect::<Vec<_>>()).p50() / 1e3,
    );
    println!(
        "Full send of {} MiB of random data, {} alternating repetitions:\n",
        o.sizes.data_mib, o.sizes.reps
    );
    let mut t = Table::new(&[
        "candidate",
        "median time",
        "min..max",
        "openssh time / this (median of per-repetition ratios)",
        "openssh median / this median",
        "CPU-s per GiB (median, steal excluded)",
        "CPU vs openssh",
    ]);
    for (k, (_, label)) in CANDIDATES.iter().enumerate() {
        let wall: Vec<f64> = runs[k].iter().map(|r| r.0).collect();
        let median = secs(&wall).p50() / 1e3;
        let ratios: Vec<f64> = wall.iter().zip(&base).map(|(w, b)| b / w).collect();
        let per_rep: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        let cpu = secs(&runs[k].iter().map(|r| r.1.busy).collect::<Vec<_>>()).p50() / 1e3;
        let (lo, hi) = wall
            .iter()
            .fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
        t.row(vec![
            label.to_string(),
            format!("{median:.2} s"),
            format!("{lo:.2}..{hi:.2}"),
            format!("{:.2} ({})", secs(&ratios).p50() / 1e3, per_rep.join(", ")),
            format!("{:.2}", base_t / median),
            format!("{:.2}", cpu / gib),
            format!("{:.2}x", cpu / base_cpu),
        ]);
    }
    let steal: f64 = runs.iter().flatten().map(|r| r.1.steal).sum();
    let fmt = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
        format!("{:.3} s ({lo:.3}..{hi:.3})", secs(v).p50() / 1e3)
    };
    print!("{t}");
    println!("\nStolen by the hypervisor during the full sends: {steal:.1} CPU-s.\n");
    let mut inc = Table::new(&["incremental, default transport", "median (min..max)"]);
    inc.row(vec![
        format!(
            "{} MiB changed: the Send's own time (its summary)",
            o.change_mib
        ),
        fmt(&own),
    ]);
    inc.row(vec!["Snapshot + Send from here".into(), fmt(&whole)]);
    inc
}
