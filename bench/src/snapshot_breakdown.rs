//! `snapshot-breakdown`: where a Snapshot request's time goes. Alternates,
//! ROUNDS times, on one volume: (1) `buttervolume::btrfs::snapshot`, the
//! daemon's own call (one `lstat` and the `BTRFS_IOC_SNAP_CREATE_V2`
//! ioctl, read-only); (2) the daemon's `/VolumeDriver.Snapshot` over its
//! socket; (3) `btrfs subvolume snapshot -r` run through `sh -c`, which is
//! what the reference does per snapshot (without its HTTP layer).

use buttervolume::api::{path, NameRequest, SnapshotReply};
use clap::Args;
use testkit::Daemon;

use crate::report::{ms, timed, Samples, Table};

#[derive(Args)]
pub struct Options {
    #[arg(long, default_value_t = 60)]
    rounds: usize,
}

pub fn run(o: &Options) -> Table {
    let d = Daemon::builder("bench-snapshot-breakdown")
        .env("RUST_LOG", "warn")
        .start();
    d.ok("/VolumeDriver.Create", serde_json::json!({ "Name": "v" }));
    let volume = d.volumes().join("v");
    let raw = d.root.join("raw");
    std::fs::create_dir(&raw).unwrap();
    let request = NameRequest { name: "v".into() };
    let (mut ioctl, mut daemon, mut cli) =
        (Samples::default(), Samples::default(), Samples::default());
    for i in 0..o.rounds {
        let (result, took) =
            timed(|| buttervolume::btrfs::snapshot(&volume, &raw.join(format!("s{i}")), true));
        result.unwrap();
        ioctl.push(took);
        let (_, took) = timed(|| d.call::<SnapshotReply>(path::SNAPSHOT, &request));
        daemon.push(took);
        let script = format!(
            "btrfs subvolume snapshot -r '{}' '{}/c{i}' >/dev/null",
            volume.display(),
            raw.display()
        );
        let (out, took) = timed(|| testkit::run("sh", &["-c", &script]));
        drop(out);
        cli.push(took);
    }
    let mut t = Table::new(&["what", "p50", "p95"]);
    for (what, samples) in [
        ("`btrfs::snapshot` (the ioctl)", &ioctl),
        ("the daemon's Snapshot request", &daemon),
        ("`btrfs subvolume snapshot -r` via `sh -c`", &cli),
    ] {
        t.row(vec![
            format!("{what}, {} rounds", samples.len()),
            ms(samples.p50()),
            ms(samples.pct(95.0)),
        ]);
    }
    t
}
