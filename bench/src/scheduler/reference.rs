//! The reference: buttervolume 3.13's `cli.runjobs()` (one tick of its
//! scheduler thread) from its venv, on the same schedule, with its
//! `snapshot`, `send` and `purge` replaced by the same fakes as ours. Its
//! code can only be driven from its own Python: `reference_tick.py` runs
//! the ticks and prints raw times, nothing else; the figures and the table
//! are computed here. Its logging (INFO, stderr) is discarded, as ours goes
//! to a sink.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::report::{ms, Samples, Table};

const DRIVER: &str = include_str!("reference_tick.py");

/// The ticks: label and (snapshot, send, purge) seconds of simulated work.
const TICKS: [(&str, &str); 3] = [
    ("none", "0,0,0"),
    ("none, again (every job runs at every tick)", "0,0,0"),
    ("snapshot 1 ms, send 5 ms, purge 1 ms", "0.001,0.005,0.001"),
];

pub fn run(dir: &Path, csv: &Path, jobs: usize) -> Table {
    let venv = testkit::reference_bin();
    let python = venv.with_file_name("python");
    let path = |p: &str| format!("{}/{p}", dir.display());
    let mut command = Command::new(&python);
    command
        .arg("-c")
        .arg(DRIVER)
        .arg(csv)
        .args(TICKS.map(|t| t.1))
        .env("BUTTERVOLUME_SCHEDULE", csv)
        .env("BUTTERVOLUME_SOCKET", path("none.sock"))
        .env("BUTTERVOLUME_VOLUMES_PATH", path("volumes/"))
        .env("BUTTERVOLUME_SNAPSHOTS_PATH", path("snapshots/"))
        .stderr(Stdio::null());
    let out = testkit::succeeded(command.output().expect("the reference's python"), "ticks");
    let mut t = Table::new(&[
        "simulated work",
        "runjobs() duration (the tick)",
        "start lag median / p99 / max",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), TICKS.len(), "one line per tick: {out}");
    for ((label, _), line) in TICKS.iter().zip(lines) {
        let times: Vec<f64> = line
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        let (t0, t1) = (times[0], times[1]);
        assert_eq!(times.len() - 2, jobs, "every job started once in the tick");
        let lags = Samples(
            times[2..]
                .iter()
                .map(|s| Duration::from_secs_f64((s - t0).max(0.0)))
                .collect(),
        );
        t.row(vec![
            label.to_string(),
            ms((t1 - t0) * 1e3),
            format!(
                "{} / {} / {}",
                ms(lags.p50()),
                ms(lags.pct(99.0)),
                ms(lags.max())
            ),
        ]);
    }
    t
}
