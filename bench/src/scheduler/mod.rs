//! `scheduler`: VOLUMES volumes × 3 jobs (`snapshot` every 60 min,
//! `replicate:peer` every 60 min, `purge:1h:1d:1w:4w:1y` every 1440 min),
//! all due at once, ours (`ours`) and the reference 3.13's (`reference`)
//! side by side. Needs no root, no btrfs, no daemon: both schedulers run
//! with fake jobs that only record when they start (and optionally sleep
//! to simulate work).

mod ours;
mod reference;

use clap::Args;

use crate::report::Table;

#[derive(Args)]
pub struct Options {
    #[arg(long, default_value_t = 1000)]
    volumes: usize,
    /// Workers per pool (ours).
    #[arg(long, default_value_t = buttervolume::schedule::DEFAULT_WORKERS)]
    workers: usize,
    /// Only ours (no reference table).
    #[arg(long, conflicts_with = "reference_only")]
    ours_only: bool,
    /// Only the reference.
    #[arg(long)]
    reference_only: bool,
}

/// The three jobs of each volume, as (action, timer minutes).
const JOBS: [(&str, i64); 3] = [
    ("snapshot", 60),
    ("replicate:peer", 60),
    ("purge:1h:1d:1w:4w:1y", 1440),
];

pub fn run(o: &Options) -> Table {
    let mut last = None;
    if !o.reference_only {
        last = Some(ours::run(o.volumes, o.workers));
    }
    if !o.ours_only {
        if let Some(idle) = last.take() {
            println!("{idle}");
        }
        let dir = tempfile::tempdir().expect("a temp dir");
        let csv = dir.path().join("config/schedule.csv");
        ours::write_schedule(&csv, o.volumes);
        let jobs = o.volumes * JOBS.len();
        println!("## Reference (buttervolume 3.13 runjobs()), same jobs and fakes\n");
        println!("{} volumes x 3 jobs = {jobs} jobs. runjobs() runs the due jobs itself, one after the other, so its tick lasts as long as all of them together.\n", o.volumes);
        last = Some(reference::run(dir.path(), &csv, jobs));
    }
    last.expect("ours or the reference")
}
