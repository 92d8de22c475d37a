//! `replication-cpu`: our full send against raw local `btrfs send | btrfs
//! receive`, alternating on one fresh node pair (bvc1 -> bvc2, our daemon
//! on both, our forced command on bvc2), with the busy and stolen CPU
//! seconds of each (the whole machine, `/proc/stat`).
//!
//! `replication` runs five paths per repetition, so raw local and ours are
//! minutes apart there; here they follow each other, which shows the ratio
//! when raw local is at its fastest. With `--perf` the last send of ours is
//! also recorded with `perf record -a` and the CPU samples are printed per
//! process and object.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use clap::Args;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use testkit::wait::wait_until;

use crate::cpu::Cpu;
use crate::pair::{Pair, Program};
use crate::report::{timed, Samples, Table};

#[derive(Args)]
pub struct Options {
    #[command(flatten)]
    sizes: crate::app_data::Sizes,
    /// Record the last send of ours with `perf record -a`.
    #[arg(long)]
    perf: bool,
}

const SNAPS: &str = "/var/lib/buttervolume/snapshots";
const RAW: &str = "/var/lib/buttervolume/rawrecv";

pub fn run(o: &Options) -> Table {
    let p = Pair::up("bvc", "4G", Program::Ours, &[]);
    let (a, b, ip) = (p.a.clone(), p.b.clone(), p.ip.clone());
    p.volume_with_data(&a, "big", o.sizes.data_mib);
    let snap = p.snapshot(&a, "big");
    std::fs::create_dir_all(p.data(&a, "rawrecv")).unwrap();
    let source = format!("{SNAPS}/{snap}");
    println!(
        "{} MiB of random data, {} alternating repetitions",
        o.sizes.data_mib, o.sizes.reps
    );

    let mut t = Table::new(&["path", "wall", "CPU-s busy", "CPU-s stolen"]);
    let mut raw = Samples::default();
    let mut ours = Samples::default();
    let mut row = |label: String, secs: f64, cpu: Cpu| {
        t.row(vec![
            label,
            format!("{secs:.2} s"),
            format!("{:.1}", cpu.busy),
            format!("{:.2}", cpu.steal),
        ])
    };
    let perf_data = format!("/var/tmp/bench-replication-cpu.{}.perf", std::process::id());
    for rep in 1..=o.sizes.reps {
        let cpu = Cpu::now();
        let took = p.pipeline(
            (&a, &["btrfs", "-q", "send", &source]),
            (&a, &["btrfs", "-q", "receive", RAW]),
        );
        row(
            format!("raw local ({rep})"),
            took.as_secs_f64(),
            cpu.since(),
        );
        raw.push(took);
        p.delete(&a, &[format!("{RAW}/{snap}")]);

        let under_perf = o.perf && rep == o.sizes.reps;
        let recorder = under_perf.then(|| perf_record(&perf_data));
        let cpu = Cpu::now();
        let (_, took) = timed(|| p.send(&a, &snap, &ip));
        let used = cpu.since();
        if let Some(recorder) = recorder {
            stop(recorder);
        }
        let label = match under_perf {
            true => format!("ours ({rep}, under perf)"),
            false => format!("ours ({rep})"),
        };
        row(label, took.as_secs_f64(), used);
        ours.push(took);
        p.delete(&b, &[format!("{SNAPS}/{snap}")]);
        p.delete(&a, &[format!("{SNAPS}/{snap}@{ip}")]);
    }
    t.row(vec![
        "median: raw local / ours".into(),
        format!(
            "{:.2} s / {:.2} s ({:.0} % of raw local)",
            raw.p50() / 1e3,
            ours.p50() / 1e3,
            100.0 * raw.p50() / ours.p50()
        ),
        String::new(),
        String::new(),
    ]);
    if o.perf {
        println!("CPU samples of the last send of ours, per process and object:\n");
        let report = testkit::run(
            "perf",
            &[
                "report",
                "-i",
                &perf_data,
                "--no-children",
                "--sort",
                "comm,dso",
                "--stdio",
                "-g",
                "none",
            ],
        );
        for line in report
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .take(12)
        {
            println!("{line}");
        }
        println!();
        let _ = std::fs::remove_file(&perf_data);
    }
    t
}

/// `perf record -a` until [`stop`]; returns once it records (its file is
/// there).
fn perf_record(output: &str) -> Child {
    let _ = std::fs::remove_file(output);
    let child = Command::new("perf")
        .args(["record", "-q", "-a", "-o", output])
        .stdout(Stdio::null())
        .spawn()
        .expect("perf (apt-get install linux-perf)");
    wait_until("perf to start recording", 30, || Path::new(output).exists());
    child
}

fn stop(mut child: Child) {
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
    // perf re-raises the SIGINT once its data is written.
    let status = child.wait().unwrap();
    let interrupted = std::os::unix::process::ExitStatusExt::signal(&status) == Some(2);
    assert!(status.success() || interrupted, "perf record: {status}");
}
